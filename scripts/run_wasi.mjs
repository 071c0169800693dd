// Runs a wasm32-wasip1 command module under Node's WASI (preview 1), passing the
// remaining arguments: node --experimental-wasi-unstable-preview1 scripts/run_wasi.mjs M.wasm ARGS...
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, exit } from "node:process";

const [file, ...args] = argv.slice(2);
if (!file) {
  console.error("usage: run_wasi.mjs MODULE.wasm [ARGS...]");
  exit(2);
}
const wasi = new WASI({ version: "preview1", args: [file, ...args], env: {} });
const module = await WebAssembly.compile(await readFile(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
exit(wasi.start(instance) ?? 0);
