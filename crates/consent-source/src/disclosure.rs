//! The disclosure report (開示, the policy's §10): what the source knows of one person, for
//! the help desk to hand over. Their current consents with the policy version each was
//! given under, their withdrawals and objections, their rights requests (stop use, stop
//! third-party provision, erasure), the whole history from the audit table, and the
//! provisions of their data from the ledger, grouped by recipient and purpose with the
//! first and last date, the count and the categories that reached the recipient.
//!
//! As JSON ([`Disclosure`]) or as a printable HTML page in Japanese, English or both
//! ([`render_html`]); purpose, category and party labels are the policy's own. Everything
//! in the page is HTML-escaped. Dates are shown in Japan time (UTC+9, no daylight saving).
//!
//! The report shows the user ID it was asked for (it is the person's own data, shown to
//! them) and the keyed reference the ledger files them under; it stores neither.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use consent_core::live::RecordDoc;
use consent_core::policy::{Label, PolicyDoc};
use serde::Serialize;

use crate::ledger::{group_provisions, LedgerRecord, ProvisionGroup, RecipientKind};
use crate::store::AuditEntry;

/// Which language the page is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// Japanese (the default).
    #[default]
    Ja,
    /// English.
    En,
    /// Both, Japanese first.
    Both,
}

impl Lang {
    /// `ja`, `en` or `both`.
    pub fn parse(text: &str) -> Option<Lang> {
        Some(match text {
            "ja" => Lang::Ja,
            "en" => Lang::En,
            "both" => Lang::Both,
            _ => return None,
        })
    }
}

/// A label in both languages, as the policy writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Labels {
    /// Japanese.
    pub ja: String,
    /// English.
    pub en: String,
}

impl From<&Label> for Labels {
    fn from(l: &Label) -> Self {
        Labels {
            ja: l.ja.clone(),
            en: l.en.clone(),
        }
    }
}

/// What the report needs of the policy: its title and the labels of its purposes,
/// categories and parties, in the policy's order.
#[derive(Debug, Clone)]
pub struct PolicyLabels {
    id: String,
    version: u32,
    effective: Option<String>,
    title: Option<Labels>,
    purposes: BTreeMap<String, (Labels, String, Option<String>)>,
    categories: Vec<(String, Labels)>,
    parties: BTreeMap<String, (Labels, String)>,
}

impl PolicyLabels {
    /// The labels of `doc`.
    pub fn from_doc(doc: &PolicyDoc) -> PolicyLabels {
        PolicyLabels {
            id: doc.id.clone(),
            version: doc.version,
            effective: doc.effective.clone(),
            title: doc.title.as_ref().map(Labels::from),
            purposes: doc
                .purposes
                .iter()
                .map(|p| {
                    (
                        p.id.clone(),
                        (
                            Labels::from(&p.label),
                            p.basis.as_str().to_string(),
                            p.section.clone(),
                        ),
                    )
                })
                .collect(),
            categories: doc
                .categories
                .iter()
                .map(|c| (c.id.clone(), Labels::from(&c.label)))
                .collect(),
            parties: doc
                .parties
                .iter()
                .map(|p| {
                    (
                        p.id.clone(),
                        (Labels::from(&p.label), p.kind.as_str().to_string()),
                    )
                })
                .collect(),
        }
    }

    fn purpose(&self, id: &str) -> Option<&Labels> {
        self.purposes.get(id).map(|(l, _, _)| l)
    }

    fn category(&self, id: &str) -> Option<&Labels> {
        self.categories
            .iter()
            .find(|(c, _)| c == id)
            .map(|(_, l)| l)
    }

    /// Position of a category in the policy (unknown ones last, by id).
    fn category_rank(&self, id: &str) -> usize {
        self.categories
            .iter()
            .position(|(c, _)| c == id)
            .unwrap_or(usize::MAX)
    }
}

/// An id with its policy label (`null` when the loaded policy does not know the id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Named {
    /// The id.
    pub id: String,
    /// The policy's labels.
    pub label: Option<Labels>,
}

/// A consent in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentLine {
    /// The purpose.
    pub purpose: Named,
    /// The purpose's basis in the loaded policy (`consent`, `notice`, ...).
    pub basis: Option<String>,
    /// The clause, e.g. `§3(1)ア②`.
    pub section: Option<String>,
    /// The policy version the consent was given under.
    pub policy_version: u32,
    /// Categories granted explicitly (location).
    pub explicit: Vec<Named>,
    /// When it was given (the last grant in the audit), if known.
    pub given_at_ms: Option<u64>,
}

/// A withdrawal or objection in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WithdrawalLine {
    /// The purpose.
    pub purpose: Named,
    /// When (the last withdrawal in the audit), if known.
    pub at_ms: Option<u64>,
}

/// The rights requests in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rights {
    /// The person asked to stop use (利用停止).
    pub stop_use: bool,
    /// The person asked to stop third-party provision (第三者提供の停止).
    pub stop_third_party: bool,
}

/// One event of the person's history (an audit row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryLine {
    /// When (Unix milliseconds).
    pub at_ms: u64,
    /// `grant`, `withdraw`, `stop_use`, `lift_stop_use`, `stop_third_party`,
    /// `lift_stop_third_party`, `erase` or `seed`.
    pub action: String,
    /// The purpose, for grants and withdrawals.
    pub purpose: Option<Named>,
    /// The policy version in force for the change (a grant's own).
    pub policy_version: u32,
}

/// Provisions to one recipient for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvisionLine {
    /// The recipient (`-`: a third party no party of the policy claims).
    pub recipient: Named,
    /// Its kind.
    pub recipient_kind: RecipientKind,
    /// The purpose.
    pub purpose: Named,
    /// The first (Unix milliseconds).
    pub first_ms: u64,
    /// The last (Unix milliseconds).
    pub last_ms: u64,
    /// How many.
    pub count: u64,
    /// The categories that reached the recipient, in the policy's order.
    pub categories: Vec<Named>,
    /// The caller identities seen (SPIFFE IDs, DNS names, clusters).
    pub identities: Vec<String>,
}

/// The policy the report was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyRef {
    /// Its id.
    pub id: String,
    /// Its version.
    pub version: u32,
    /// When it took effect.
    pub effective: Option<String>,
    /// Its title.
    pub title: Option<Labels>,
}

/// The ledger's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LedgerState {
    /// Whether the source keeps the provision ledger (it has a ledger key).
    pub on: bool,
    /// How long records are kept.
    pub retention_days: u32,
}

/// The disclosure report of one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disclosure {
    /// When it was made (Unix milliseconds).
    pub issued_at_ms: u64,
    /// The same, in Japan time.
    pub issued_at: String,
    /// The policy of the labels and checks.
    pub policy: PolicyRef,
    /// The user ID asked for.
    pub user: String,
    /// The keyed reference the ledger files the person under (`null` without a ledger).
    pub subject_ref: Option<String>,
    /// Whether the source holds a consent record for the person.
    pub record: bool,
    /// Consents in force.
    pub consents: Vec<ConsentLine>,
    /// Withdrawals and objections in force.
    pub withdrawals: Vec<WithdrawalLine>,
    /// Rights requests in force.
    pub rights: Rights,
    /// Every recorded change, oldest first.
    pub history: Vec<HistoryLine>,
    /// Provisions of the person's data, by recipient and purpose.
    pub provisions: Vec<ProvisionLine>,
    /// Provisions the filter refused, by recipient and purpose (no data went).
    pub refused: Vec<ProvisionLine>,
    /// The ledger's state.
    pub ledger: LedgerState,
}

/// What a report is made from.
pub struct Input<'a> {
    /// The user ID asked for.
    pub user: &'a str,
    /// The keyed reference, when the ledger is on.
    pub subject_ref: Option<String>,
    /// The person's record, if any.
    pub record: Option<&'a RecordDoc>,
    /// The person's audit rows, oldest first.
    pub audit: &'a [AuditEntry],
    /// The person's ledger records.
    pub ledger: &'a [LedgerRecord],
    /// The ledger's state.
    pub ledger_state: LedgerState,
    /// Now (Unix milliseconds).
    pub now_ms: u64,
}

fn named(id: &str, label: Option<&Labels>) -> Named {
    Named {
        id: id.to_string(),
        label: label.cloned(),
    }
}

fn line(labels: &PolicyLabels, g: ProvisionGroup) -> ProvisionLine {
    let mut categories = g.categories;
    categories.sort_by(|a, b| {
        labels
            .category_rank(a)
            .cmp(&labels.category_rank(b))
            .then_with(|| a.cmp(b))
    });
    let recipient_label = labels.parties.get(&g.recipient).map(|(l, _)| l);
    ProvisionLine {
        recipient: named(&g.recipient, recipient_label),
        recipient_kind: g.recipient_kind,
        purpose: named(&g.purpose, labels.purpose(&g.purpose)),
        first_ms: g.first_ms,
        last_ms: g.last_ms,
        count: g.count,
        categories: categories
            .iter()
            .map(|c| named(c, labels.category(c)))
            .collect(),
        identities: g.identities,
    }
}

/// Builds the report from what the source holds of one person.
pub fn build(labels: &PolicyLabels, input: &Input<'_>) -> Disclosure {
    let last = |action: &str, purpose: &str| {
        input
            .audit
            .iter()
            .rev()
            .find(|a| a.action == action && a.purpose.as_deref() == Some(purpose))
            .map(|a| a.at_ms)
    };
    let mut consents = Vec::new();
    let mut withdrawals = Vec::new();
    let mut rights = Rights {
        stop_use: false,
        stop_third_party: false,
    };
    if let Some(record) = input.record {
        for (purpose, grant) in &record.grants {
            let (basis, section) = labels
                .purposes
                .get(purpose)
                .map(|(_, b, s)| (Some(b.clone()), s.clone()))
                .unwrap_or((None, None));
            consents.push(ConsentLine {
                purpose: named(purpose, labels.purpose(purpose)),
                basis,
                section,
                policy_version: grant.policy_version,
                explicit: grant
                    .explicit
                    .iter()
                    .map(|c| named(c, labels.category(c)))
                    .collect(),
                given_at_ms: last("grant", purpose),
            });
        }
        for purpose in &record.withdrawn {
            withdrawals.push(WithdrawalLine {
                purpose: named(purpose, labels.purpose(purpose)),
                at_ms: last("withdraw", purpose),
            });
        }
        rights = Rights {
            stop_use: record.stop_use,
            stop_third_party: record.stop_third_party,
        };
    }
    let history = input
        .audit
        .iter()
        .map(|a| HistoryLine {
            at_ms: a.at_ms,
            action: a.action.clone(),
            purpose: a.purpose.as_deref().map(|p| named(p, labels.purpose(p))),
            policy_version: a.policy_version,
        })
        .collect();
    let (provided, refused): (Vec<ProvisionGroup>, Vec<ProvisionGroup>) =
        group_provisions(input.ledger)
            .into_iter()
            .partition(|g| g.provided);
    Disclosure {
        issued_at_ms: input.now_ms,
        issued_at: format_jst(input.now_ms),
        policy: PolicyRef {
            id: labels.id.clone(),
            version: labels.version,
            effective: labels.effective.clone(),
            title: labels.title.clone(),
        },
        user: input.user.to_string(),
        subject_ref: input.subject_ref.clone(),
        record: input.record.is_some(),
        consents,
        withdrawals,
        rights,
        history,
        provisions: provided.into_iter().map(|g| line(labels, g)).collect(),
        refused: refused.into_iter().map(|g| line(labels, g)).collect(),
        ledger: input.ledger_state,
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM` in Japan time (UTC+9).
pub fn format_jst(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX / 2) + 9 * 3600;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// `text` with `& < > " '` escaped for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A fixed text of the page in both languages.
struct T(&'static str, &'static str);

/// Writes fixed texts and labels in the page's language(s); everything escaped.
struct Page {
    lang: Lang,
    out: String,
}

impl Page {
    fn text(&self, t: &T) -> String {
        match self.lang {
            Lang::Ja => escape(t.0),
            Lang::En => escape(t.1),
            Lang::Both => format!("{} <span class=\"en\">{}</span>", escape(t.0), escape(t.1)),
        }
    }

    fn label(&self, n: &Named) -> String {
        let id = format!("<code>{}</code>", escape(&n.id));
        match (&n.label, self.lang) {
            (None, _) => format!(
                "{id} <span class=\"unknown\">{}</span>",
                self.text(&UNKNOWN_ID)
            ),
            (Some(l), Lang::Ja) => format!("{}<br>{id}", escape(&l.ja)),
            (Some(l), Lang::En) => format!("{}<br>{id}", escape(&l.en)),
            (Some(l), Lang::Both) => format!(
                "{}<br><span class=\"en\">{}</span><br>{id}",
                escape(&l.ja),
                escape(&l.en)
            ),
        }
    }

    fn labels(&self, list: &[Named]) -> String {
        if list.is_empty() {
            return "-".to_string();
        }
        list.iter()
            .map(|n| match (&n.label, self.lang) {
                (None, _) => format!("<code>{}</code>", escape(&n.id)),
                (Some(l), Lang::En) => escape(&l.en),
                (Some(l), Lang::Ja) => escape(&l.ja),
                (Some(l), Lang::Both) => {
                    format!(
                        "{} <span class=\"en\">({})</span>",
                        escape(&l.ja),
                        escape(&l.en)
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("、")
    }

    fn heading(&mut self, level: u8, t: &T) {
        let text = self.text(t);
        let _ = writeln!(self.out, "<h{level}>{text}</h{level}>");
    }

    fn table_head(&mut self, class: &str, columns: &[&T]) {
        let _ = write!(self.out, "<table class=\"{class}\"><thead><tr>");
        for c in columns {
            let text = self.text(c);
            let _ = write!(self.out, "<th>{text}</th>");
        }
        self.out.push_str("</tr></thead><tbody>\n");
    }

    fn none(&mut self, t: &T) {
        let text = self.text(t);
        let _ = writeln!(self.out, "<p class=\"none\">{text}</p>");
    }
}

const UNKNOWN_ID: T = T(
    "（現行のポリシーにない項目）",
    "(not in the current policy)",
);

fn action_text(action: &str) -> T {
    match action {
        "grant" => T("同意", "Consent given"),
        "withdraw" => T("同意の撤回・異議", "Consent withdrawn / objection"),
        "stop_use" => T("利用停止の請求", "Request to stop use"),
        "lift_stop_use" => T("利用停止の解除", "Stop-use request lifted"),
        "stop_third_party" => T(
            "第三者提供停止の請求",
            "Request to stop provision to third parties",
        ),
        "lift_stop_third_party" => T("第三者提供停止の解除", "Stop-provision request lifted"),
        "erase" => T(
            "消去の請求（記録の消去）",
            "Erasure request (record erased)",
        ),
        "seed" => T("初期登録", "Initial record"),
        _ => T("その他の変更", "Other change"),
    }
}

fn kind_text(kind: RecipientKind) -> T {
    match kind {
        RecipientKind::ThirdParty => T("第三者", "Third party"),
        RecipientKind::JointUser => T("共同利用者", "Joint user"),
        RecipientKind::Processor => T("委託先", "Processor"),
    }
}

const STYLE: &str = "
  body { font-family: 'Noto Sans CJK JP', 'Noto Sans JP', 'Hiragino Sans', 'Yu Gothic', sans-serif;
         margin: 2em auto; max-width: 60em; color: #111; line-height: 1.5; }
  h1 { font-size: 1.5em; border-bottom: 3px solid #1a4d8f; padding-bottom: .2em; margin: 0 0 .6em; }
  h2 { font-size: 1.1em; margin: 1.2em 0 .3em; border-left: 6px solid #1a4d8f; padding-left: .4em; }
  .en { color: #555; font-size: .9em; }
  table { border-collapse: collapse; width: 100%; margin: .3em 0; font-size: .88em; line-height: 1.35; }
  th, td { border: 1px solid #999; padding: .25em .45em; text-align: left; vertical-align: top; }
  table.provisions td:first-child, table.refused td:first-child { width: 24%; }
  td.clause { white-space: nowrap; }
  th { background: #e8eef7; }
  td.n { text-align: right; white-space: nowrap; }
  td.date { white-space: nowrap; }
  code { font-size: .85em; color: #333; }
  dl.meta { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
  dl.meta dt { font-weight: bold; }
  dl.meta dd { margin: 0; }
  .none { color: #555; font-style: italic; }
  .unknown { color: #a00; }
  footer { margin-top: 2em; font-size: .85em; color: #444; border-top: 1px solid #999; padding-top: .5em; }
  @page { size: A4; margin: 15mm; }
  @media print {
    body { margin: 0; max-width: none; font-size: 10pt; }
    h2 { break-after: avoid; }
    tr, dl.meta { break-inside: avoid; }
    thead { display: table-header-group; }
    th { background: #eee !important; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  }
";

fn provision_table(page: &mut Page, lines: &[ProvisionLine], refused: bool) {
    let mut columns = vec![
        &T("提供先", "Recipient"),
        &T("区分", "Kind"),
        &T("利用目的", "Purpose"),
    ];
    if !refused {
        columns.push(&T("提供した項目", "Data provided"));
    }
    columns.extend([&T("初回", "First"), &T("最終", "Last"), &T("件数", "Count")]);
    let class = if refused { "refused" } else { "provisions" };
    page.table_head(class, &columns);
    for l in lines {
        let recipient = if l.recipient.id == "-" {
            let who = page.text(&T(
                "ポリシーに記載のない第三者",
                "A third party not named in the policy",
            ));
            let ids = if l.identities.is_empty() {
                String::new()
            } else {
                format!(
                    "<br><code>{}</code>",
                    l.identities
                        .iter()
                        .map(|i| escape(i))
                        .collect::<Vec<_>>()
                        .join("<br>")
                )
            };
            format!("{who}{ids}")
        } else {
            page.label(&l.recipient)
        };
        let kind = page.text(&kind_text(l.recipient_kind));
        let purpose = page.label(&l.purpose);
        let _ = write!(
            page.out,
            "<tr class=\"{}\" data-recipient=\"{}\" data-purpose=\"{}\" data-count=\"{}\"><td>{recipient}</td><td>{kind}</td><td>{purpose}</td>",
            if refused { "refused-row" } else { "provision" },
            escape(&l.recipient.id),
            escape(&l.purpose.id),
            l.count
        );
        if !refused {
            let cats = page.labels(&l.categories);
            let _ = write!(page.out, "<td>{cats}</td>");
        }
        let _ = writeln!(
            page.out,
            "<td class=\"date\">{}</td><td class=\"date\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&format_jst(l.first_ms)),
            escape(&format_jst(l.last_ms)),
            l.count
        );
    }
    page.out.push_str("</tbody></table>\n");
}

/// The report as a printable HTML page in `lang`.
pub fn render_html(d: &Disclosure, lang: Lang) -> String {
    let mut page = Page {
        lang,
        out: String::with_capacity(16 * 1024),
    };
    let html_lang = if lang == Lang::En { "en" } else { "ja" };
    let title = page.text(&T(
        "保有個人データの開示",
        "Disclosure of retained personal data",
    ));
    let plain_title = match lang {
        Lang::Ja => "保有個人データの開示".to_string(),
        Lang::En => "Disclosure of retained personal data".to_string(),
        Lang::Both => "保有個人データの開示 / Disclosure of retained personal data".to_string(),
    };
    let _ = write!(
        page.out,
        "<!DOCTYPE html>\n<html lang=\"{html_lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n",
        escape(&plain_title)
    );
    // The person and the document.
    let policy_title = match (&d.policy.title, lang) {
        (Some(t), Lang::Ja) => escape(&t.ja),
        (Some(t), Lang::En) => escape(&t.en),
        (Some(t), Lang::Both) => format!(
            "{}<br><span class=\"en\">{}</span>",
            escape(&t.ja),
            escape(&t.en)
        ),
        (None, _) => escape(&d.policy.id),
    };
    let meta: Vec<(T, String)> = vec![
        (
            T("発行日時", "Issued"),
            format!("{} <span class=\"en\">(UTC+9)</span>", escape(&d.issued_at)),
        ),
        (
            T("照会されたID", "User ID asked for"),
            format!("<code id=\"user\">{}</code>", escape(&d.user)),
        ),
        (
            T("記録上の参照番号", "Reference in the records"),
            match &d.subject_ref {
                Some(s) => format!("<code id=\"subject-ref\">{}</code>", escape(s)),
                None => "-".to_string(),
            },
        ),
        (
            T("プライバシーポリシー", "Privacy policy"),
            format!(
                "{policy_title}<br><code>{} version {}</code>{}",
                escape(&d.policy.id),
                d.policy.version,
                d.policy
                    .effective
                    .as_ref()
                    .map(|e| format!(" ({})", escape(e)))
                    .unwrap_or_default()
            ),
        ),
    ];
    page.out.push_str("<dl class=\"meta\">\n");
    for (k, v) in &meta {
        let k = page.text(k);
        let _ = writeln!(page.out, "<dt>{k}</dt><dd>{v}</dd>");
    }
    page.out.push_str("</dl>\n");
    if !d.record && d.history.is_empty() {
        page.none(&T(
            "このIDの同意の記録はありません。",
            "There is no consent record for this ID.",
        ));
    }

    // 1. Consents.
    page.heading(2, &T("1. 現在の同意", "1. Consents in force"));
    if d.consents.is_empty() {
        page.none(&T("同意はありません。", "No consent is in force."));
    } else {
        page.table_head(
            "consents",
            &[
                &T("利用目的", "Purpose"),
                &T("条項", "Clause"),
                &T("同意時のポリシー版", "Policy version consented to"),
                &T("明示的に同意した項目", "Explicitly granted data"),
                &T("同意日時", "Given"),
            ],
        );
        for c in &d.consents {
            let purpose = page.label(&c.purpose);
            let explicit = page.labels(&c.explicit);
            let _ = writeln!(
                page.out,
                "<tr class=\"consent\" data-purpose=\"{}\"><td>{purpose}</td><td class=\"clause\">{}</td><td class=\"n\">{}</td><td>{explicit}</td><td class=\"date\">{}</td></tr>",
                escape(&c.purpose.id),
                escape(c.section.as_deref().unwrap_or("-")),
                c.policy_version,
                c.given_at_ms.map(format_jst).map(|s| escape(&s)).unwrap_or_else(|| "-".into())
            );
        }
        page.out.push_str("</tbody></table>\n");
    }

    // 2. Withdrawals.
    page.heading(
        2,
        &T("2. 同意の撤回・異議", "2. Withdrawals and objections"),
    );
    if d.withdrawals.is_empty() {
        page.none(&T("撤回・異議はありません。", "None."));
    } else {
        page.table_head(
            "withdrawals",
            &[&T("利用目的", "Purpose"), &T("日時", "When")],
        );
        for w in &d.withdrawals {
            let purpose = page.label(&w.purpose);
            let _ = writeln!(
                page.out,
                "<tr class=\"withdrawal\" data-purpose=\"{}\"><td>{purpose}</td><td class=\"date\">{}</td></tr>",
                escape(&w.purpose.id),
                w.at_ms.map(format_jst).map(|s| escape(&s)).unwrap_or_else(|| "-".into())
            );
        }
        page.out.push_str("</tbody></table>\n");
    }

    // 3. Rights requests: what is in force, and when each last changed.
    page.heading(2, &T("3. 権利行使の請求", "3. Rights requests"));
    let last_of = |actions: &[&str]| {
        d.history
            .iter()
            .rev()
            .find(|h| actions.contains(&h.action.as_str()))
            .map(|h| h.at_ms)
    };
    let erased = last_of(&["erase"]);
    page.table_head(
        "rights",
        &[
            &T("請求", "Request"),
            &T("状態", "State"),
            &T("最終変更", "Last change"),
        ],
    );
    for (t, on, id, since) in [
        (
            T("利用停止", "Stop use"),
            d.rights.stop_use,
            "stop_use",
            last_of(&["stop_use", "lift_stop_use"]),
        ),
        (
            T("第三者提供の停止", "Stop provision to third parties"),
            d.rights.stop_third_party,
            "stop_third_party",
            last_of(&["stop_third_party", "lift_stop_third_party"]),
        ),
        (
            T("消去（記録の消去）", "Erasure of the record"),
            erased.is_some() && !d.record,
            "erase",
            erased,
        ),
    ] {
        let name = page.text(&t);
        let state = match (id, on) {
            ("erase", true) => page.text(&T("消去済み", "Erased")),
            ("erase", false) if erased.is_some() => {
                page.text(&T("消去後に再登録", "Recorded again after erasure"))
            }
            (_, true) => page.text(&T("請求中", "In force")),
            (_, false) => page.text(&T("なし", "No")),
        };
        let _ = writeln!(
            page.out,
            "<tr class=\"right\" data-right=\"{id}\" data-on=\"{on}\"><td>{name}</td><td>{state}</td><td class=\"date\">{}</td></tr>",
            since.map(format_jst).map(|s| escape(&s)).unwrap_or_else(|| "-".into())
        );
    }
    page.out.push_str("</tbody></table>\n");

    // 4. Provisions.
    page.heading(
        2,
        &T(
            "4. 第三者提供・共同利用・委託の記録",
            "4. Provision to third parties, joint users and processors",
        ),
    );
    if !d.ledger.on {
        page.none(&T(
            "この情報源は提供記録を保存していません。",
            "This source keeps no provision records.",
        ));
    } else if d.provisions.is_empty() {
        page.none(&T("提供の記録はありません。", "No provision is recorded."));
    } else {
        provision_table(&mut page, &d.provisions, false);
    }
    if d.ledger.on && !d.refused.is_empty() {
        page.heading(
            2,
            &T(
                "5. 提供しなかった請求（同意がない等）",
                "5. Requests for the data that were refused (no data was provided)",
            ),
        );
        provision_table(&mut page, &d.refused, true);
    }

    // History.
    page.heading(2, &T("同意等の履歴", "History of consents and requests"));
    if d.history.is_empty() {
        page.none(&T("履歴はありません。", "No history."));
    } else {
        page.table_head(
            "history",
            &[
                &T("日時", "When"),
                &T("内容", "What"),
                &T("利用目的", "Purpose"),
                &T("ポリシー版", "Policy version"),
            ],
        );
        for h in &d.history {
            let action = page.text(&action_text(&h.action));
            let purpose = h
                .purpose
                .as_ref()
                .map(|p| page.label(p))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                page.out,
                "<tr class=\"event\" data-action=\"{}\"><td class=\"date\">{}</td><td>{action}</td><td>{purpose}</td><td class=\"n\">{}</td></tr>",
                escape(&h.action),
                escape(&format_jst(h.at_ms)),
                h.policy_version
            );
        }
        page.out.push_str("</tbody></table>\n");
    }

    let note = page.text(&T(
        "提供の記録は、提供の日から保存期間が過ぎると消去されます。日時は日本時間です。",
        "Provision records are deleted when the retention period after the provision has passed. Times are Japan time.",
    ));
    let retention = page.text(&T("保存期間", "Retention"));
    let days = page.text(&T("日", "days"));
    let _ = writeln!(
        page.out,
        "<footer><p>{note}</p><p>{retention}: {} {days}</p></footer>\n</body>\n</html>",
        d.ledger.retention_days
    );
    page.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{LedgerBasis, Outcome};
    use consent_core::live::GrantDoc;

    fn labels() -> PolicyLabels {
        let doc: PolicyDoc = serde_json::from_str(consent_core::DEFAULT_POLICY_JSON).unwrap();
        PolicyLabels::from_doc(&doc)
    }

    fn entry(seq: u64, at_ms: u64, action: &str, purpose: Option<&str>) -> AuditEntry {
        AuditEntry {
            seq,
            at_ms,
            actor: "desk".into(),
            action: action.into(),
            subject: "u-hanako".into(),
            purpose: purpose.map(String::from),
            policy_version: 1,
            explicit: None,
            version: seq,
        }
    }

    fn provision(
        id: &str,
        recipient: &str,
        purpose: &str,
        ts: u64,
        outcome: Outcome,
        cats: &[&str],
    ) -> LedgerRecord {
        LedgerRecord {
            request_id: id.into(),
            ts_ms: ts,
            recipient: recipient.into(),
            recipient_kind: if recipient == "-" {
                RecipientKind::ThirdParty
            } else {
                RecipientKind::JointUser
            },
            recipient_identity: None,
            purpose: purpose.into(),
            basis: LedgerBasis::Notice,
            categories: cats.iter().map(|c| c.to_string()).collect(),
            subject: "ab".repeat(16),
            outcome,
            reason: "notice_basis".into(),
        }
    }

    const T0: u64 = 1_767_225_600_000; // 2026-01-01 00:00 UTC = 09:00 JST

    fn report() -> Disclosure {
        let mut record = RecordDoc {
            subject: "u-hanako".into(),
            grants: Default::default(),
            stop_use: false,
            stop_third_party: true,
            withdrawn: vec!["surveys".into()],
        };
        record.grants.insert(
            "service.improvement".into(),
            GrantDoc {
                policy_version: 1,
                explicit: vec!["location.gps".into()],
            },
        );
        let audit = vec![
            entry(1, T0, "grant", Some("surveys")),
            entry(2, T0 + 1000, "grant", Some("service.improvement")),
            entry(3, T0 + 2000, "withdraw", Some("surveys")),
            entry(4, T0 + 3000, "stop_third_party", None),
        ];
        let ledger = vec![
            provision(
                "a",
                "saitama-city",
                "joint.ebpm",
                T0 + 86_400_000,
                Outcome::Redact,
                &["address", "birth_date"],
            ),
            provision(
                "b",
                "saitama-city",
                "joint.ebpm",
                T0 + 2 * 86_400_000,
                Outcome::Allow,
                &["gender"],
            ),
            provision(
                "c",
                "-",
                "marketing.third_party_offers",
                T0 + 5000,
                Outcome::Block,
                &[],
            ),
            provision(
                "d",
                "saitama-city",
                "no.such.purpose",
                T0,
                Outcome::Allow,
                &["no.such.category"],
            ),
        ];
        build(
            &labels(),
            &Input {
                user: "u-hanako",
                subject_ref: Some("ab".repeat(16)),
                record: Some(&record),
                audit: &audit,
                ledger: &ledger,
                ledger_state: LedgerState {
                    on: true,
                    retention_days: 1095,
                },
                now_ms: T0 + 10 * 86_400_000,
            },
        )
    }

    #[test]
    fn the_report_holds_consents_withdrawals_rights_history_and_grouped_provisions() {
        let d = report();
        assert_eq!(d.consents.len(), 1);
        let c = &d.consents[0];
        assert_eq!(c.purpose.id, "service.improvement");
        assert_eq!(c.policy_version, 1);
        assert_eq!(c.given_at_ms, Some(T0 + 1000));
        assert_eq!(c.explicit[0].label.as_ref().unwrap().ja, "GPS位置情報");
        assert_eq!(d.withdrawals[0].at_ms, Some(T0 + 2000));
        assert!(d.rights.stop_third_party && !d.rights.stop_use);
        assert_eq!(d.history.len(), 4);
        // Provisions: saitama-city × joint.ebpm twice (categories in the policy's order),
        // and one under a purpose the loaded policy does not know, kept with its id.
        assert_eq!(d.provisions.len(), 2);
        let ebpm = d
            .provisions
            .iter()
            .find(|p| p.purpose.id == "joint.ebpm")
            .unwrap();
        assert_eq!(
            (ebpm.count, ebpm.first_ms, ebpm.last_ms),
            (2, T0 + 86_400_000, T0 + 2 * 86_400_000)
        );
        let cats: Vec<&str> = ebpm.categories.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(cats, ["birth_date", "gender", "address"]);
        assert_eq!(ebpm.recipient.label.as_ref().unwrap().ja, "さいたま市");
        let unknown = d
            .provisions
            .iter()
            .find(|p| p.purpose.id == "no.such.purpose")
            .unwrap();
        assert!(unknown.purpose.label.is_none() && unknown.categories[0].label.is_none());
        // Refused: the block to an unclaimed third party.
        assert_eq!(d.refused.len(), 1);
        assert_eq!(d.refused[0].recipient.id, "-");
        assert_eq!(d.issued_at, "2026-01-11 09:00");
    }

    #[test]
    fn the_page_shows_the_labels_in_the_language_asked_and_escapes_everything() {
        let mut d = report();
        d.user = "<script>alert('x')</script>&".into();
        let ja = render_html(&d, Lang::Ja);
        assert!(ja.contains("<html lang=\"ja\">"));
        assert!(ja.contains("さいたま市"));
        assert!(ja.contains("証拠に基づく政策立案"));
        assert!(!ja.contains("Saitama City"));
        assert!(ja.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"));
        assert!(!ja.contains("<script>"));
        assert!(ja.contains("@media print"));
        assert_eq!(ja.matches("<tr class=\"provision\"").count(), 2);
        assert_eq!(ja.matches("<tr class=\"refused-row\"").count(), 1);
        assert!(ja.contains("（現行のポリシーにない項目）"));
        let en = render_html(&d, Lang::En);
        assert!(en.contains("<html lang=\"en\">"));
        assert!(en.contains("Saitama City (joint user)"));
        assert!(!en.contains("さいたま市"));
        let both = render_html(&d, Lang::Both);
        assert!(both.contains("さいたま市") && both.contains("Saitama City (joint user)"));
    }

    #[test]
    fn an_unknown_person_gets_an_empty_report() {
        let d = build(
            &labels(),
            &Input {
                user: "u-nobody",
                subject_ref: None,
                record: None,
                audit: &[],
                ledger: &[],
                ledger_state: LedgerState {
                    on: false,
                    retention_days: 1095,
                },
                now_ms: T0,
            },
        );
        assert!(!d.record && d.consents.is_empty() && d.provisions.is_empty());
        let html = render_html(&d, Lang::En);
        assert!(html.contains("There is no consent record for this ID."));
        assert!(html.contains("This source keeps no provision records."));
    }

    #[test]
    fn an_erased_person_still_sees_the_history_and_the_erasure() {
        let audit = vec![
            entry(1, T0, "grant", Some("surveys")),
            entry(2, T0 + 60_000, "erase", None),
        ];
        let d = build(
            &labels(),
            &Input {
                user: "u-gone",
                subject_ref: None,
                record: None,
                audit: &audit,
                ledger: &[],
                ledger_state: LedgerState {
                    on: true,
                    retention_days: 1095,
                },
                now_ms: T0 + 120_000,
            },
        );
        assert!(!d.record && d.consents.is_empty());
        assert_eq!(d.history.len(), 2);
        let html = render_html(&d, Lang::Ja);
        assert!(
            html.contains("data-right=\"erase\" data-on=\"true\""),
            "{html}"
        );
        assert!(html.contains("消去済み"));
        assert!(html.contains("2026-01-01 09:01"));
        assert!(
            !html.contains("このIDの同意の記録はありません"),
            "the history is shown instead"
        );
    }

    #[test]
    fn dates_are_japan_time() {
        assert_eq!(format_jst(0), "1970-01-01 09:00");
        assert_eq!(format_jst(T0 - 1), "2026-01-01 08:59");
        // 2024-02-29 15:00 UTC is 2024-03-01 00:00 JST.
        assert_eq!(format_jst(1_709_218_800_000), "2024-03-01 00:00");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
