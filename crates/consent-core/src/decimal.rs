//! Decimal numbers appended to strings on the request path without `format!`.

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in digits.get(at..).unwrap_or_default() {
        out.push(char::from(*d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn decimals_read_as_format_would_write_them() {
        for n in [0u64, 9, 100, 1_234_567_890, u64::MAX] {
            let mut out = String::from("v=");
            push_decimal(&mut out, n);
            assert_eq!(out, format!("v={n}"));
        }
    }
}
