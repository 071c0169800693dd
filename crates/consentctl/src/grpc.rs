//! `consentctl grpc descriptors`: compiles `.proto` files with `protox` (a protobuf
//! compiler in Rust, so no `protoc` is needed) into the serialized
//! `google.protobuf.FileDescriptorSet` that the plugin configuration's
//! `grpc.descriptor_set` holds (base64), with every import included and no source info.

use std::path::PathBuf;

use base64::Engine as _;

use crate::report::{Failure, Report};

/// Compiles `files` (paths relative to one of `proto_path`, or under it) and returns the
/// encoded descriptor set.
pub fn descriptor_set(proto_path: &[PathBuf], files: &[PathBuf]) -> Result<Vec<u8>, Failure> {
    let includes: Vec<PathBuf> = if proto_path.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        proto_path.to_vec()
    };
    let mut compiler = protox::Compiler::new(&includes)
        .map_err(|e| Failure::new(format!("cannot read the proto path: {e}")))?;
    compiler.include_imports(true).include_source_info(false);
    compiler
        .open_files(files)
        .map_err(|e| Failure::new(format!("cannot compile the .proto files: {e}")))?;
    Ok(compiler.encode_file_descriptor_set())
}

/// Runs `grpc descriptors`: writes the set to `output` (binary, or base64 text with
/// `base64`), or prints it as base64.
pub fn descriptors(
    proto_path: &[PathBuf],
    files: &[PathBuf],
    base64: bool,
    output: Option<&PathBuf>,
) -> Result<Report, Failure> {
    let bytes = descriptor_set(proto_path, files)?;
    let text = base64.then(|| base64::engine::general_purpose::STANDARD.encode(&bytes));
    let schema = consent_core::grpc::Schema::decode(&bytes, "descriptor set")
        .map_err(|e| Failure::new(format!("the compiled set does not load: {e}")))?;
    let summary = format!(
        "{} message types, {} methods",
        schema.messages().len(),
        schema.method_count()
    );
    match (output, text) {
        (Some(path), text) => {
            let data = match &text {
                Some(t) => format!("{t}\n").into_bytes(),
                None => bytes,
            };
            std::fs::write(path, data)
                .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))?;
            let mut report = Report::ok(String::new());
            report
                .notes
                .push(format!("wrote {} ({summary})", path.display()));
            Ok(report)
        }
        (None, Some(text)) => Ok(Report::ok(format!("{text}\n"))),
        (None, None) => Err(Failure::new(
            "a descriptor set is binary: give -o FILE, or --base64 to print it",
        )),
    }
}
