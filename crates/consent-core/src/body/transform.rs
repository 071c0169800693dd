//! Value transforms for anonymised use (§9): coarsen location, birth dates and addresses,
//! and pseudonymise identifiers with a keyed hash.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

/// How a category's values are coarsened, declared on the category in the policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum CoarsenSpec {
    /// Round every coordinate to a grid of this many degrees (0.01 is about 1 km).
    GridDegrees(f64),
    /// Replace a position (`{lat,lng}`, `[lat,lng]` or `"lat,lng"`) by its geohash prefix.
    GeohashPrecision(u8),
    /// Replace a date (`YYYY-MM-DD`) by an age band of this many years (`"30-39"`).
    AgeBandYears(u32),
    /// Keep a string up to and including the first marker found, trying markers in order
    /// (`["区", "市"]` turns an address into its ward).
    TruncateAfter(Vec<String>),
}

impl CoarsenSpec {
    /// Checks the parameters; the error says which rule is broken.
    pub fn check(&self) -> Result<(), String> {
        match self {
            CoarsenSpec::GridDegrees(d) if !(d.is_finite() && *d > 0.0 && *d <= 10.0) => {
                Err("grid_degrees must be in (0, 10]".to_string())
            }
            CoarsenSpec::GeohashPrecision(p) if !(1..=12).contains(p) => {
                Err("geohash_precision must be 1 to 12".to_string())
            }
            CoarsenSpec::AgeBandYears(y) if !(1..=100).contains(y) => {
                Err("age_band_years must be 1 to 100".to_string())
            }
            CoarsenSpec::TruncateAfter(m) if m.is_empty() || m.iter().any(String::is_empty) => {
                Err("truncate_after needs non-empty markers".to_string())
            }
            _ => Ok(()),
        }
    }
}

/// A civil date, for age bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilDate {
    /// Year.
    pub year: i32,
    /// Month 1-12.
    pub month: u32,
    /// Day 1-31.
    pub day: u32,
}

impl CivilDate {
    /// 1970-01-01: the date handed to transforms that never read it (a decision whose
    /// purpose coarsens nothing into an age band), so that the host need not read its
    /// clock for them.
    pub const UNIX_EPOCH: CivilDate = CivilDate {
        year: 1970,
        month: 1,
        day: 1,
    };

    /// The UTC date of a Unix time in seconds.
    pub fn from_unix_seconds(secs: i64) -> Self {
        // Howard Hinnant's days-to-civil algorithm.
        let z = secs.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        CivilDate { year, month, day }
    }
}

/// The date the body tests take for today (transform's and the redactor's).
#[cfg(test)]
pub(crate) const TEST_TODAY: CivilDate = CivilDate {
    year: 2026,
    month: 11,
    day: 27,
};

/// Applies a coarsening to one JSON value (its raw bytes); `None` means it cannot be
/// coarsened and must be removed instead.
pub fn coarsen(spec: &CoarsenSpec, raw: &[u8], today: CivilDate) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(raw).ok()?;
    serde_json::to_vec(&coarsen_value(spec, &value, today)?).ok()
}

/// Applies a coarsening to a parsed value; `None` means it cannot be coarsened. A string
/// is coarsened as text ([`coarsen_text`], shared with protobuf `string` fields).
pub(crate) fn coarsen_value(spec: &CoarsenSpec, value: &Value, today: CivilDate) -> Option<Value> {
    if let Value::String(text) = value {
        return coarsen_text(spec, text, today).map(Value::String);
    }
    Some(match spec {
        CoarsenSpec::GridDegrees(d) => grid(value, *d)?,
        CoarsenSpec::GeohashPrecision(p) => {
            let (lat, lng) = position(value)?;
            Value::String(geohash(lat, lng, *p)?)
        }
        CoarsenSpec::AgeBandYears(years) => {
            Value::String(age_band(value.as_str()?, today, *years)?)
        }
        CoarsenSpec::TruncateAfter(markers) => {
            Value::String(truncate_after(value.as_str()?, markers)?)
        }
    })
}

/// A text value (a form parameter) as the JSON value it stands for: a number when it
/// reads as a JSON number, else a string. So `35.8617` coarsens like a JSON number and
/// `35.8617,139.6455` like a `"lat,lng"` string.
pub(crate) fn text_as_value(text: &str) -> Value {
    match serde_json::from_str::<serde_json::Number>(text) {
        Ok(n) => Value::Number(n),
        Err(_) => Value::String(text.to_string()),
    }
}

/// A transformed value as text again: a number's literal or a string's content; `None`
/// for anything else (it is removed instead).
pub(crate) fn value_as_text(value: Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn decimals_for(step: f64) -> usize {
    let mut decimals = 0;
    let mut s = step;
    while decimals < 10 && (s - s.round()).abs() > 1e-9 {
        s *= 10.0;
        decimals += 1;
    }
    decimals
}

fn snap(x: f64, step: f64) -> f64 {
    let snapped = (x / step).round() * step;
    format!("{:.*}", decimals_for(step), snapped)
        .parse()
        .unwrap_or(snapped)
}

/// Coarsens the text of a string value (a JSON string or a protobuf `string` field):
/// `"lat,lng"` (or any comma-separated numbers) rounded to the grid, a `"lat,lng"`
/// position turned into its geohash, a date into its age band, an address truncated.
/// `None`: the rule cannot coarsen it, so it must be removed.
pub fn coarsen_text(spec: &CoarsenSpec, text: &str, today: CivilDate) -> Option<String> {
    match spec {
        CoarsenSpec::GridDegrees(step) => grid_text(text, *step),
        CoarsenSpec::GeohashPrecision(p) => {
            let (lat, lng) = text_position(text)?;
            geohash(lat, lng, *p)
        }
        CoarsenSpec::AgeBandYears(years) => age_band(text, today, *years),
        CoarsenSpec::TruncateAfter(markers) => truncate_after(text, markers),
    }
}

/// Rounds one coordinate to the grid (`GridDegrees` only: a lone number is no position,
/// date or address for the other rules).
pub fn coarsen_number(spec: &CoarsenSpec, x: f64) -> Option<f64> {
    match spec {
        CoarsenSpec::GridDegrees(step) if x.is_finite() => Some(snap(x, *step)),
        _ => None,
    }
}

fn grid_text(s: &str, step: f64) -> Option<String> {
    let parts: Option<Vec<String>> = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .ok()
                .map(|x| snap(x, step).to_string())
        })
        .collect();
    parts.map(|p| p.join(","))
}

fn text_position(s: &str) -> Option<(f64, f64)> {
    let (a, b) = s.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Rounds every number (and every number inside a `"lat,lng"` string) to the grid; drops
/// what cannot be rounded.
fn grid(value: &Value, step: f64) -> Option<Value> {
    match value {
        Value::Number(n) => {
            serde_json::Number::from_f64(snap(n.as_f64()?, step)).map(Value::Number)
        }
        Value::String(s) => grid_text(s, step).map(Value::String),
        Value::Array(items) => Some(Value::Array(
            items.iter().filter_map(|v| grid(v, step)).collect(),
        )),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| grid(v, step).map(|v| (k.clone(), v)))
                .collect(),
        )),
        Value::Null | Value::Bool(_) => Some(value.clone()),
    }
}

/// Finds a (lat, lng) pair in an object, a two-element array or a `"lat,lng"` string.
fn position(value: &Value) -> Option<(f64, f64)> {
    let num = |v: &Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    };
    match value {
        Value::Object(map) => {
            let find = |names: &[&str]| {
                map.iter()
                    .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
                    .and_then(|(_, v)| num(v))
            };
            Some((
                find(&["lat", "latitude"])?,
                find(&["lng", "lon", "long", "longitude"])?,
            ))
        }
        Value::Array(items) if items.len() == 2 => {
            Some((num(items.first()?)?, num(items.get(1)?)?))
        }
        Value::String(s) => text_position(s),
        _ => None,
    }
}

const BASE32: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// The geohash of a position, `precision` characters long.
pub fn geohash(lat: f64, lng: f64, precision: u8) -> Option<String> {
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
        return None;
    }
    let (mut lat_lo, mut lat_hi, mut lng_lo, mut lng_hi) = (-90.0, 90.0, -180.0, 180.0);
    let mut out = String::with_capacity(usize::from(precision));
    let mut even = true;
    let (mut bits, mut ch) = (0u8, 0usize);
    while out.len() < usize::from(precision) {
        if even {
            let mid = (lng_lo + lng_hi) / 2.0;
            if lng >= mid {
                ch = (ch << 1) | 1;
                lng_lo = mid;
            } else {
                ch <<= 1;
                lng_hi = mid;
            }
        } else {
            let mid = (lat_lo + lat_hi) / 2.0;
            if lat >= mid {
                ch = (ch << 1) | 1;
                lat_lo = mid;
            } else {
                ch <<= 1;
                lat_hi = mid;
            }
        }
        even = !even;
        bits += 1;
        if bits == 5 {
            out.push(char::from(*BASE32.get(ch)?));
            bits = 0;
            ch = 0;
        }
    }
    Some(out)
}

/// `"1990-04-01"` on 2026-11-27 with 10-year bands is `"30-39"`.
pub fn age_band(date: &str, today: CivilDate, years: u32) -> Option<String> {
    let mut parts = date.get(..10)?.split(['-', '/']);
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut age = today.year - y;
    if (today.month, today.day) < (m, d) {
        age -= 1;
    }
    let age = u32::try_from(age).ok()?;
    let low = age / years * years;
    Some(format!("{}-{}", low, low + years - 1))
}

/// Keeps `text` up to and including the first marker found (markers tried in order).
pub fn truncate_after(text: &str, markers: &[String]) -> Option<String> {
    markers.iter().find_map(|m| {
        text.find(m.as_str())
            .and_then(|at| text.get(..at + m.len()))
            .map(str::to_string)
    })
}

/// Replaces an identifier (string content or number literal) by `"ps_"` and the first
/// 128 bits of HMAC-SHA-256 under `key`, in hex: joins still work, the value is gone.
pub fn pseudonymise(key: &[u8], raw: &[u8]) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(raw).ok()?;
    serde_json::to_vec(&pseudonymise_value(key, &value)?).ok()
}

/// The pseudonym of a string or number value, as a string value.
pub(crate) fn pseudonymise_value(key: &[u8], value: &Value) -> Option<Value> {
    let input = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    pseudonym(key, input.as_bytes()).map(Value::String)
}

/// The pseudonym of `input` under `key`.
pub fn pseudonym(key: &[u8], input: &[u8]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(input);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(35);
    out.push_str("ps_");
    for b in tag.iter().take(16) {
        out.push_str(&format!("{b:02x}"));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::TEST_TODAY as TODAY;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn c(spec: CoarsenSpec, raw: &str) -> Option<String> {
        coarsen(&spec, raw.as_bytes(), TODAY).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn grid_rounds_objects_arrays_strings_and_drops_the_rest() {
        let g = CoarsenSpec::GridDegrees(0.01);
        assert_eq!(
            c(g.clone(), r#"{"lat":35.8617,"lng":139.6455}"#).unwrap(),
            r#"{"lat":35.86,"lng":139.65}"#
        );
        assert_eq!(c(g.clone(), "35.8617").unwrap(), "35.86");
        assert_eq!(
            c(g.clone(), r#""35.8617, 139.6455""#).unwrap(),
            r#""35.86,139.65""#
        );
        assert_eq!(
            c(g.clone(), r#"{"bssid":"00:11","lat":1.234}"#).unwrap(),
            r#"{"lat":1.23}"#
        );
        assert_eq!(c(g, r#""not a place""#), None);
    }

    #[test]
    fn geohash_matches_known_cells() {
        // Reference values from the geohash definition (e.g. 57.64911,10.40744 -> u4pruydqqvj).
        assert_eq!(geohash(57.64911, 10.40744, 11).unwrap(), "u4pruydqqvj");
        assert_eq!(
            c(
                CoarsenSpec::GeohashPrecision(5),
                r#"{"lat":57.64911,"lon":10.40744}"#
            )
            .unwrap(),
            r#""u4pru""#
        );
        assert_eq!(
            c(CoarsenSpec::GeohashPrecision(5), "[57.64911,10.40744]").unwrap(),
            r#""u4pru""#
        );
        assert_eq!(
            c(CoarsenSpec::GeohashPrecision(5), "57.6"),
            None,
            "a lone number is not a position"
        );
    }

    #[test]
    fn birth_dates_become_age_bands() {
        assert_eq!(age_band("1990-04-01", TODAY, 10).unwrap(), "30-39");
        assert_eq!(
            age_band("1996-11-28", TODAY, 10).unwrap(),
            "20-29",
            "birthday not yet reached"
        );
        assert_eq!(age_band("1996-11-27", TODAY, 5).unwrap(), "30-34");
        assert_eq!(age_band("garbage", TODAY, 10), None);
        assert_eq!(
            c(CoarsenSpec::AgeBandYears(10), r#""1990-04-01""#).unwrap(),
            r#""30-39""#
        );
    }

    #[test]
    fn addresses_become_their_ward() {
        let markers = vec!["区".to_string(), "市".to_string()];
        assert_eq!(
            truncate_after("埼玉県さいたま市浦和区高砂3-1-1", &markers).unwrap(),
            "埼玉県さいたま市浦和区"
        );
        assert_eq!(
            truncate_after("埼玉県川口市本町1-1", &markers).unwrap(),
            "埼玉県川口市"
        );
        assert_eq!(truncate_after("somewhere", &markers), None);
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_hide_the_value() {
        let a = pseudonymise(b"k1-0123456789abcdef", br#""dev-7f3a9c""#).unwrap();
        let b = pseudonymise(b"k1-0123456789abcdef", br#""dev-7f3a9c""#).unwrap();
        let other_key = pseudonymise(b"k2-0123456789abcdef", br#""dev-7f3a9c""#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, other_key);
        let text = String::from_utf8(a).unwrap();
        assert!(
            text.starts_with("\"ps_") && text.len() == 2 + 3 + 32,
            "{text}"
        );
        assert!(!text.contains("7f3a9c"));
        assert!(pseudonymise(b"k", b"{}").is_none());
    }

    #[test]
    fn text_values_read_as_numbers_or_strings() {
        let g = CoarsenSpec::GridDegrees(0.01);
        let coarse =
            |text: &str| coarsen_value(&g, &text_as_value(text), TODAY).and_then(value_as_text);
        assert_eq!(coarse("35.8617").as_deref(), Some("35.86"));
        assert_eq!(coarse("35.8617,139.6455").as_deref(), Some("35.86,139.65"));
        assert_eq!(coarse("somewhere"), None);
        assert_eq!(value_as_text(Value::Bool(true)), None);
    }

    #[test]
    fn civil_dates_from_unix_time() {
        assert_eq!(
            CivilDate::from_unix_seconds(0),
            CivilDate {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        assert_eq!(
            CivilDate::from_unix_seconds(1_795_737_600),
            CivilDate {
                year: 2026,
                month: 11,
                day: 27
            }
        );
        assert_eq!(
            CivilDate::from_unix_seconds(951_782_400),
            CivilDate {
                year: 2000,
                month: 2,
                day: 29
            }
        );
    }

    #[test]
    fn spec_parameters_are_checked() {
        assert!(CoarsenSpec::GridDegrees(0.0).check().is_err());
        assert!(CoarsenSpec::GeohashPrecision(13).check().is_err());
        assert!(CoarsenSpec::TruncateAfter(vec![]).check().is_err());
        assert!(CoarsenSpec::GridDegrees(0.01).check().is_ok());
    }
}
