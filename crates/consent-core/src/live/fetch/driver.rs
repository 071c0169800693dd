//! Carrying out the machine's effects through a host: one call per effect, in order, the
//! first failure reported back to the machine and the rest dropped. The proxy-wasm
//! fetcher implements [`FetchHost`] with Envoy's host calls; the tests with a map.

use crate::live::fetch::effects::{Counter, Effect, Effects, FetchRequest, Gauge, LogLine};
use crate::live::fetch::FetchMachine;

/// A host call failed; the text is the host's status, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFailure(pub String);

impl std::fmt::Display for HostFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the fetcher needs from its host.
pub trait FetchHost {
    /// Starts a call to the source; its token comes back with the answer.
    fn fetch(&mut self, request: &FetchRequest) -> Result<u32, HostFailure>;
    /// Writes a value in shared data.
    fn write(&mut self, key: &str, bytes: &[u8]) -> Result<(), HostFailure>;
    /// Reads a value from shared data (`None`: nothing there).
    fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostFailure>;
    /// Sets the tick period.
    fn set_tick(&mut self, period_ms: u64) -> Result<(), HostFailure>;
    /// Sets a gauge.
    fn gauge(&mut self, gauge: Gauge, value: u64);
    /// Adds one to a counter.
    fn count(&mut self, counter: Counter);
    /// Writes a log line.
    fn log(&mut self, line: &LogLine);
    /// The host clock, Unix ms.
    fn now_ms(&self) -> u64;
}

impl FetchMachine {
    /// Carries out `effects` through `host`, feeding results back to the machine; false
    /// when one failed (it was reported with [`FetchMachine::failed`] and the rest dropped).
    pub fn run(&mut self, effects: Effects, host: &mut impl FetchHost) -> bool {
        for effect in effects {
            let done = match &effect {
                Effect::Fetch(request) => host.fetch(request).map(|token| self.sent(token)),
                Effect::Write { key, bytes, .. } => host.write(key, bytes),
                Effect::ReadBuckets(reads) => {
                    let read = reads
                        .iter()
                        .map(|r| (r.bucket, host.read(&r.key)))
                        .collect();
                    let next = self.on_buckets_read(read, host.now_ms());
                    if !self.run(next, host) {
                        return false;
                    }
                    Ok(())
                }
                Effect::SetTick { period_ms, .. } => host.set_tick(*period_ms),
                Effect::SetGauge(gauge, value) => {
                    host.gauge(*gauge, *value);
                    Ok(())
                }
                Effect::Count(counter) => {
                    host.count(*counter);
                    Ok(())
                }
                Effect::Log(line) => {
                    host.log(line);
                    Ok(())
                }
            };
            if let Err(status) = done {
                let next = self.failed(&effect, &status);
                self.run(next, host);
                return false;
            }
        }
        true
    }
}
