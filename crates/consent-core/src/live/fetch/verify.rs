//! The response path's first step: a 200 (full snapshot, part or delta) is checked against
//! its minisign signature before a byte of it is parsed. The signature comes in the
//! `consent-signature` header, or, when the answer has none, from a second call for the
//! same path plus `.minisig`, while the body waits here.
//!
//! A bad or missing signature is refused like a corrupt document (the last good snapshot
//! stays; `consent_snapshot_rejected` and `consent_snapshot_signature_rejected` count it;
//! a refused delta makes the next fetch a full one). With `require_signature: false` an
//! unsigned document (no header, the `.minisig` file 404) is taken, with a warning; a
//! signature that is there must still verify.

use crate::live::fetch::effects::{Counter, Effect, Effects, LogLevel};
use crate::live::fetch::{Ask, FetchMachine, Response};
use crate::live::signature::{SignatureError, SIGNATURE_SUFFIX};

/// An answer waiting for its signature file.
#[derive(Debug)]
pub(super) struct Unsigned {
    /// What it answered.
    ask: Ask,
    /// The path it came from (its `.minisig` is next to it).
    path: String,
    body: Vec<u8>,
    etag: Option<String>,
}

impl FetchMachine {
    /// A 200 to `ask`: verified (when a key is configured), then taken.
    pub(super) fn answered(&mut self, ask: Ask, response: &Response<'_>, now_ms: u64) -> Effects {
        let Some(trust) = self.config.snapshot.trust.as_ref() else {
            return self.take(ask, response.body, response.etag, now_ms);
        };
        match response.signature {
            Some(header) => match trust.verify_header(response.body, header) {
                Ok(()) => self.take(ask, response.body, response.etag, now_ms),
                Err(e) => self.refuse(ask, e),
            },
            None => self.ask_signature(ask, response),
        }
    }

    /// The answer to the `.minisig` call (`status` `None`: no answer).
    pub(super) fn signature_arrived(
        &mut self,
        status: Option<u16>,
        minisig: &[u8],
        now_ms: u64,
    ) -> Effects {
        let Some(unsigned) = self.unsigned.take() else {
            return Effects::none();
        };
        let Some(trust) = self.config.snapshot.trust.as_ref() else {
            return Effects::none();
        };
        let checked = match status {
            Some(200) => std::str::from_utf8(minisig)
                .map_err(|_| SignatureError::Malformed)
                .and_then(|text| trust.verify(&unsigned.body, text)),
            Some(404) if !trust.required => return self.take_unsigned(unsigned, now_ms),
            Some(404) => Err(SignatureError::Missing),
            Some(status) => {
                return self.fetch_failed(format!(
                    "consent fetcher: source answered {status} for a signature file; keeping the last good snapshot"
                ))
            }
            None => {
                return self.fetch_failed(
                    "consent fetcher: source unreachable for a signature file; keeping the last good snapshot"
                        .to_string(),
                )
            }
        };
        match checked {
            Ok(()) => {
                let Unsigned {
                    ask, body, etag, ..
                } = unsigned;
                self.take(ask, &body, etag.as_deref(), now_ms)
            }
            Err(e) => self.refuse(unsigned.ask, e),
        }
    }

    /// The path of the `.minisig` being fetched.
    pub(super) fn signature_path(&self) -> String {
        let path = self.unsigned.as_ref().map_or("", |u| u.path.as_str());
        format!("{path}{SIGNATURE_SUFFIX}")
    }

    /// Keeps the answer and asks for its `.minisig`.
    fn ask_signature(&mut self, ask: Ask, response: &Response<'_>) -> Effects {
        self.unsigned = Some(Unsigned {
            ask,
            path: self.request(ask).path,
            body: response.body.to_vec(),
            etag: response.etag.map(str::to_string),
        });
        Effects::from(self.ask(Ask::Signature))
    }

    /// Takes an unsigned answer (`require_signature: false`), saying so.
    fn take_unsigned(&mut self, unsigned: Unsigned, now_ms: u64) -> Effects {
        let Unsigned {
            ask,
            path,
            body,
            etag,
        } = unsigned;
        let mut effects = Effects::line(
            LogLevel::Warn,
            format!(
                "consent fetcher: {path} is not signed; taken because snapshot.require_signature is false"
            ),
        );
        effects.append(self.take(ask, &body, etag.as_deref(), now_ms));
        effects
    }

    /// A verified (or unchecked) answer, parsed by what it answers.
    fn take(&mut self, ask: Ask, body: &[u8], etag: Option<&str>, now_ms: u64) -> Effects {
        match ask {
            Ask::Full => self.first_part(body, etag, now_ms),
            Ask::Part(i) => self.next_part(i, body, now_ms),
            Ask::Delta => self.delta_arrived(body),
            Ask::Signature => Effects::none(),
        }
    }

    /// Refuses an answer whose signature did not verify.
    fn refuse(&mut self, ask: Ask, error: SignatureError) -> Effects {
        let what = match ask {
            Ask::Full => "snapshot",
            Ask::Part(_) => "snapshot part",
            Ask::Delta => {
                self.need_full = true;
                "delta"
            }
            Ask::Signature => "signature",
        };
        let mut effects = Effects::from(Effect::Count(Counter::SignatureRejected));
        effects.append(self.reject(what, &error));
        effects
    }
}
