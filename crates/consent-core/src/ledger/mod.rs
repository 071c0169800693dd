//! The provision ledger, the filter's side: every provision to a third party or a joint
//! user (and every such provision refused) becomes one record for the consent source's
//! `POST /ledger` (APPI Art. 29, 30; the policy's §10 disclosure).
//!
//! | file | owns |
//! |---|---|
//! | [`settings`] | the `ledger` block of the plugin configuration |
//! | [`record`] | which provisions are recorded, and the record of a finished stream |
//! | [`outbox`] | the drainer's bounded buffer, batches, retries and health (no I/O) |
//! | [`health`] | the health flag in shared data and each worker's cached view of it |

pub mod health;
pub mod outbox;
pub mod record;
pub mod settings;

pub use health::{available_from, encode_health, HealthCache, HEALTH_KEY, OUTBOX_KEY, QUEUE_NAME};
pub use outbox::{Answered, Health, Outbox};
pub use record::{is_recorded, Draft, LedgerRecord};
pub use settings::{LedgerDoc, LedgerSettings, OnUnavailable};
