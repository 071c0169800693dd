//! gRPC framing, sans-IO: one [`GrpcStream`] per direction of a call, fed body chunks as
//! they arrive. It walks the 5-byte message prefixes (a flags byte, then the length as 4
//! bytes big-endian), several per chunk or one split across many, holds only the
//! incomplete tail, and rewrites each complete message as it passes: the whole stream is
//! never buffered. `application/grpc-web` uses the same framing; its trailer frames (flag
//! `0x80`) pass unchanged.

use crate::body::redactor::BodyReport;
use crate::decide::reason::Reason;
use crate::policy::categories::CategoryIdx;

use super::schema::MessageIdx;
use super::walk::{rewrite_into, ProtoError, ProtoRules, Walked};

/// Bytes of a message prefix: flags, then the length (big-endian).
pub const PREFIX_BYTES: usize = 5;

/// Flag of a compressed message.
const COMPRESSED: u8 = 0x01;
/// Flag of a grpc-web trailer frame.
const TRAILERS: u8 = 0x80;

/// Which framing the body uses (from its `content-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/grpc` (and `+proto`): messages only.
    Grpc,
    /// `application/grpc-web` (and `+proto`): messages, then one trailer frame.
    GrpcWeb,
}

/// Why a gRPC body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcRefusal {
    /// A message with the compressed flag: the filter cannot read it.
    Compressed,
    /// A message declared longer than the limit (`body.max_bytes`).
    TooLarge,
    /// The stream ended inside a message.
    Truncated,
    /// A flags byte the framing does not define.
    BadFlags(u8),
    /// A message is not valid protobuf.
    Malformed(ProtoError),
    /// A message holds a category whose action for the purpose is `block`.
    Blocked(CategoryIdx),
}

impl GrpcRefusal {
    /// The reason code of the refusal (replies, logs, metrics).
    pub fn reason(self) -> Reason {
        match self {
            GrpcRefusal::Compressed => Reason::BodyEncodingUnsupported,
            GrpcRefusal::TooLarge => Reason::BodyTooLarge,
            GrpcRefusal::Truncated | GrpcRefusal::BadFlags(_) | GrpcRefusal::Malformed(_) => {
                Reason::BodyInvalidProtobuf
            }
            GrpcRefusal::Blocked(_) => Reason::ForbiddenDataPresent,
        }
    }
}

impl std::fmt::Display for GrpcRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrpcRefusal::Compressed => f.write_str("grpc compressed message"),
            GrpcRefusal::TooLarge => f.write_str("grpc message over the size limit"),
            GrpcRefusal::Truncated => {
                f.write_str("grpc stream ends inside a message (truncated message)")
            }
            GrpcRefusal::BadFlags(b) => write!(f, "grpc message with unknown flags 0x{b:02x}"),
            GrpcRefusal::Malformed(e) => write!(f, "grpc message is not valid protobuf: {e}"),
            GrpcRefusal::Blocked(_) => f.write_str("grpc message holds a blocked category"),
        }
    }
}

/// The state of one direction of one gRPC call.
#[derive(Debug, Clone)]
pub struct GrpcStream {
    message: MessageIdx,
    framing: Framing,
    max_message: usize,
    /// The incomplete frame at the end of what was pushed so far.
    tail: Vec<u8>,
    report: BodyReport,
    messages: usize,
    rewritten: usize,
    refused: Option<GrpcRefusal>,
}

impl GrpcStream {
    /// A stream of messages of type `message`, none longer than `max_message` bytes.
    pub fn new(message: MessageIdx, framing: Framing, max_message: usize) -> Self {
        GrpcStream {
            message,
            framing,
            max_message,
            tail: Vec::new(),
            report: BodyReport::default(),
            messages: 0,
            rewritten: 0,
            refused: None,
        }
    }

    /// Feeds one chunk; returns the bytes to forward now (complete frames, rewritten).
    /// A refusal is final: every later call returns it again.
    pub fn push(&mut self, rules: &ProtoRules<'_>, chunk: &[u8]) -> Result<Vec<u8>, GrpcRefusal> {
        let mut out = Vec::with_capacity(chunk.len() + self.tail.len());
        self.push_into(rules, chunk, &mut out)?;
        Ok(out)
    }

    /// Like [`GrpcStream::push`], appending to `out`; on a refusal nothing is appended.
    pub fn push_into(
        &mut self,
        rules: &ProtoRules<'_>,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), GrpcRefusal> {
        if let Some(r) = self.refused {
            return Err(r);
        }
        let start = out.len();
        let result = self.frames(rules, chunk, out);
        if let Err(r) = result {
            out.truncate(start);
            self.refused = Some(r);
            self.tail = Vec::new();
        }
        result
    }

    /// Ends the stream: bytes left over are a truncated message.
    pub fn finish(&mut self) -> Result<(), GrpcRefusal> {
        if let Some(r) = self.refused {
            return Err(r);
        }
        if !self.tail.is_empty() {
            self.refused = Some(GrpcRefusal::Truncated);
            self.tail = Vec::new();
            return Err(GrpcRefusal::Truncated);
        }
        Ok(())
    }

    /// What was done to the messages so far.
    pub fn report(&self) -> &BodyReport {
        &self.report
    }

    /// Messages seen (trailer frames not counted).
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// Messages that were rewritten.
    pub fn rewritten(&self) -> usize {
        self.rewritten
    }

    /// Bytes held back, waiting for the rest of their frame.
    pub fn buffered(&self) -> usize {
        self.tail.len()
    }

    fn frames(
        &mut self,
        rules: &ProtoRules<'_>,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), GrpcRefusal> {
        let mut rest = chunk;
        if !self.tail.is_empty() {
            if self.tail.len() < PREFIX_BYTES {
                let (head, after) = rest.split_at(rest.len().min(PREFIX_BYTES - self.tail.len()));
                self.tail.extend_from_slice(head);
                rest = after;
                if self.tail.len() < PREFIX_BYTES {
                    return Ok(());
                }
            }
            let len = self.prefix(&self.tail)?;
            let need = PREFIX_BYTES + len - self.tail.len();
            let (body, after) = rest.split_at(rest.len().min(need));
            self.tail.extend_from_slice(body);
            rest = after;
            if self.tail.len() < PREFIX_BYTES + len {
                return Ok(());
            }
            let frame = std::mem::take(&mut self.tail);
            self.frame(rules, &frame, out)?;
            self.tail = frame;
            self.tail.clear();
        }
        while rest.len() >= PREFIX_BYTES {
            let len = self.prefix(rest)?;
            let Some((frame, after)) = rest.split_at_checked(PREFIX_BYTES + len) else {
                break;
            };
            self.frame(rules, frame, out)?;
            rest = after;
        }
        self.tail.extend_from_slice(rest);
        Ok(())
    }

    /// Checks a frame's prefix (at least five bytes) and returns its declared length.
    fn prefix(&self, bytes: &[u8]) -> Result<usize, GrpcRefusal> {
        let Some([flags, a, b, c, d]) = bytes.first_chunk::<PREFIX_BYTES>().copied() else {
            return Err(GrpcRefusal::Truncated);
        };
        if flags & COMPRESSED != 0 {
            return Err(GrpcRefusal::Compressed);
        }
        let known = match self.framing {
            Framing::Grpc => flags == 0,
            Framing::GrpcWeb => flags == 0 || flags == TRAILERS,
        };
        if !known {
            return Err(GrpcRefusal::BadFlags(flags));
        }
        let len = u32::from_be_bytes([a, b, c, d]);
        match usize::try_from(len) {
            Ok(len) if len <= self.max_message => Ok(len),
            _ => Err(GrpcRefusal::TooLarge),
        }
    }

    /// Handles one complete frame (prefix included).
    fn frame(
        &mut self,
        rules: &ProtoRules<'_>,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), GrpcRefusal> {
        let (prefix, payload) = frame
            .split_at_checked(PREFIX_BYTES)
            .ok_or(GrpcRefusal::Truncated)?;
        if prefix.first() == Some(&TRAILERS) {
            out.extend_from_slice(frame);
            return Ok(());
        }
        self.messages += 1;
        let at = out.len();
        out.extend_from_slice(&[0; PREFIX_BYTES]);
        let walked = rewrite_into(payload, self.message, rules, out, &mut self.report)
            .map_err(GrpcRefusal::Malformed)?;
        match walked {
            Walked::Blocked(c) => return Err(GrpcRefusal::Blocked(c)),
            Walked::Rewritten => self.rewritten += 1,
            Walked::Unchanged => {}
        }
        let len =
            u32::try_from(out.len() - at - PREFIX_BYTES).map_err(|_| GrpcRefusal::TooLarge)?;
        if let Some(p) = out.get_mut(at..at + PREFIX_BYTES) {
            p.copy_from_slice(&[0, 0, 0, 0, 0]);
            if let Some(l) = p.get_mut(1..) {
                l.copy_from_slice(&len.to_be_bytes());
            }
        }
        Ok(())
    }
}
