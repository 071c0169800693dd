//! Stage 1 of the two-stage JSON redactor ([`super::two_stage`]): a structural index of the
//! body, 64 bytes at a time, in the manner of simdjson's stage 1.
//!
//! For each 64-byte block, SIMD compares find the quotes, backslashes, operators
//! (`{ } [ ] : ,`), whitespace and control bytes (AVX2 or SSE2 on x86_64, chosen at run
//! time; simd128 on wasm32 when the build enables it; eight bytes at a time in a `u64`
//! elsewhere). Plain 64-bit arithmetic then finds which characters are escaped (odd runs
//! of backslashes), which bytes are inside strings (a prefix XOR of the unescaped quotes)
//! and where tokens start. A token is an operator outside strings, a quote that opens or
//! closes a string, or the first byte of a run of other bytes outside strings (a number, a
//! literal, or garbage for stage 2 to refuse). Nothing inside a string is a token, so
//! stage 2 steps over a string's content in one go.
//!
//! Stage 1 checks what it sees inside strings: no control byte, and every escape one JSON
//! knows (`\" \\ \/ \b \f \n \r \t`, or `\u` and four hex digits). The grammar, numbers,
//! literals and depth are stage 2's; UTF-8 is checked on the blocks that hold a non-ASCII
//! byte ([`Indexer::utf8`]).
//!
//! This is the only module of the core with `unsafe` code: the SIMD loads, and the call of
//! the AVX2 kernel once the CPU has said it has AVX2.
#![allow(unsafe_code)]

/// Bytes per block: one bit of a `u64` mask per byte.
pub(crate) const BLOCK: usize = 64;

/// Blocks indexed per [`Indexer::window`] call (4 KiB of body).
pub(crate) const WINDOW: usize = 64;

/// Every other bit, from bit 1: the odd positions of a block.
const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;

/// The byte classes of one block, bit `i` for byte `i`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Classes {
    /// `"`.
    quote: u64,
    /// `\`.
    backslash: u64,
    /// `{ } [ ] : ,`, and 0x0C and 0x1A: the bytes that equal an operator once bit 5 is
    /// set, which is how every kernel finds them. No valid body has those two outside a
    /// string, and inside one they are control bytes, refused: as tokens they only make
    /// stage 2 refuse the body as it would have anyway.
    op: u64,
    /// JSON whitespace: space, tab, line feed, carriage return.
    ws: u64,
    /// Below 0x20.
    ctrl: u64,
    /// Some byte of the block is not ASCII.
    high: bool,
}

/// Which SIMD instructions classify the blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Eight bytes at a time in a `u64`: any target.
    Portable,
    /// x86_64's baseline.
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// 32 bytes at a time; used only where the CPU says it has AVX2 (and PCLMULQDQ, for
    /// the prefix XOR).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// WebAssembly SIMD (the build enables `simd128`, as `.cargo/config.toml` does for
    /// the wasm32 targets).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
}

impl Kernel {
    /// The fastest kernel this machine runs.
    pub(crate) fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("pclmulqdq") {
                return Kernel::Avx2;
            }
            return Kernel::Sse2;
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            return Kernel::Simd128;
        }
        #[allow(unreachable_code)]
        Kernel::Portable
    }

    /// Every kernel this machine runs (for tests that compare them).
    #[cfg(test)]
    pub(crate) fn all() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut all = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            all.push(Kernel::Sse2);
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("pclmulqdq") {
                all.push(Kernel::Avx2);
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        all.push(Kernel::Simd128);
        all
    }
}

/// What one block tells the next.
#[derive(Debug, Clone, Copy, Default)]
struct Carry {
    /// Bit 0: the first byte of the next block is escaped.
    escaped: u64,
    /// All ones when the next block starts inside a string.
    in_string: u64,
    /// Bit 0: the last byte of the block was an "other" byte outside strings.
    other: u64,
}

/// Stage 1's output: one token mask per 64-byte block of the body (bit `i` of mask `b`:
/// a token starts at byte `64 * b + i`), the last block padded with spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    /// The token masks.
    pub(crate) masks: Vec<u64>,
    /// Some byte of the body is a backslash: without one, no string has an escape.
    pub(crate) backslash: bool,
}

/// Indexes the whole body with the fastest kernel; `None` when it breaks a rule stage 1
/// checks: a control byte or an escape JSON does not know inside a string, a string left
/// open at the end, or bytes that are not UTF-8.
pub(crate) fn index(input: &[u8]) -> Option<Index> {
    index_with(Kernel::best(), input)
}

/// [`index`] with `kernel`.
pub(crate) fn index_with(kernel: Kernel, input: &[u8]) -> Option<Index> {
    let mut ix = Indexer::with_kernel(kernel);
    let mut masks = vec![0u64; input.len().div_ceil(BLOCK)];
    let mut backslash = false;
    for (w, window) in masks.chunks_mut(WINDOW).enumerate() {
        ix.window(input, w * WINDOW * BLOCK, window);
        backslash |= ix.window_backslash;
        if ix.errors != 0 {
            return None;
        }
    }
    (ix.ended_cleanly() && ix.utf8(input)).then_some(Index { masks, backslash })
}

/// Stage 1's state between blocks, and what it found.
#[derive(Debug, Clone)]
struct Indexer {
    kernel: Kernel,
    carry: Carry,
    /// Nonzero once a block broke a rule stage 1 checks.
    errors: u64,
    /// The start of the first block with a non-ASCII byte and the end of the last one.
    non_ascii: Option<(usize, usize)>,
    /// Some block of the last window holds a backslash.
    window_backslash: bool,
}

impl Indexer {
    /// An indexer at the start of a body, with `kernel`.
    fn with_kernel(kernel: Kernel) -> Self {
        Indexer {
            kernel,
            carry: Carry::default(),
            errors: 0,
            non_ascii: None,
            window_backslash: false,
        }
    }

    /// The blocks indexed so far end outside strings, with no backslash pending.
    fn ended_cleanly(&self) -> bool {
        self.carry.in_string == 0 && self.carry.escaped == 0
    }

    /// Whether the input is UTF-8, once every block has been indexed: only the span from
    /// the first block with a non-ASCII byte to the last one is checked, the rest being
    /// ASCII.
    fn utf8(&self, input: &[u8]) -> bool {
        match self.non_ascii {
            None => true,
            Some((from, to)) => input
                .get(from..to)
                .is_some_and(|span| std::str::from_utf8(span).is_ok()),
        }
    }

    /// Indexes the blocks of `input` from `start` (a multiple of [`BLOCK`], each block
    /// after the previous call's) into `masks` (at most [`WINDOW`] of them), one token
    /// mask per block (bit `i`: a token starts at `start + 64 * block + i`), and returns
    /// how many blocks it filled: fewer than `masks.len()` only at the end of the input.
    /// The last block is padded with spaces.
    fn window(&mut self, input: &[u8], start: usize, masks: &mut [u64]) -> usize {
        match self.kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2
                if std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("pclmulqdq") =>
            {
                // SAFETY: the CPU has AVX2 and PCLMULQDQ (asked just now), the features
                // `window_avx2` needs beyond the baseline.
                unsafe { self.window_avx2(input, start, masks) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Sse2 => {
                // SAFETY: SSE2 is part of every x86_64 CPU (the target's baseline).
                unsafe { self.window_sse2(input, start, masks) }
            }
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => self.window_with(input, start, masks, classify_simd128, prefix_xor),
            Kernel::Portable => {
                self.window_with(input, start, masks, classify_portable, prefix_xor)
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,pclmulqdq")]
    fn window_avx2(&mut self, input: &[u8], start: usize, masks: &mut [u64]) -> usize {
        self.window_with(
            input,
            start,
            masks,
            |block| classify_avx2(block),
            |x| prefix_xor_clmul(x),
        )
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse2")]
    fn window_sse2(&mut self, input: &[u8], start: usize, masks: &mut [u64]) -> usize {
        self.window_with(
            input,
            start,
            masks,
            |block| classify_sse2(block),
            prefix_xor,
        )
    }

    /// Classifies the window's blocks first, all of them, and then turns the classes into
    /// token masks: kept apart, the SIMD compares stay in vector registers and the masks
    /// stay plain integers (one loop let LLVM keep the masks as vectors of booleans and
    /// shuffle bits one by one).
    #[inline(always)]
    fn window_with(
        &mut self,
        input: &[u8],
        start: usize,
        masks: &mut [u64],
        classify: impl Fn(&[u8; BLOCK]) -> Classes,
        prefix: impl Fn(u64) -> u64,
    ) -> usize {
        let mut classes = [Classes::default(); WINDOW];
        let rest = input.get(start..).unwrap_or_default();
        let wanted = masks.len().min(WINDOW);
        let full = (rest.len() / BLOCK).min(wanted);
        let mut blocks = rest.chunks_exact(BLOCK).take(full);
        for (slot, block) in classes.iter_mut().zip(&mut blocks) {
            if let Some(block) = block.first_chunk::<BLOCK>() {
                *slot = classify(block);
            }
        }
        let mut filled = full;
        if full < wanted {
            let tail = rest.get(full * BLOCK..).unwrap_or_default();
            if let (false, Some(slot)) = (tail.is_empty(), classes.get_mut(full)) {
                let mut padded = [b' '; BLOCK];
                for (to, from) in padded.iter_mut().zip(tail) {
                    *to = *from;
                }
                *slot = classify(&padded);
                filled += 1;
            }
        }
        let mut carry = self.carry;
        let mut errors = 0;
        let mut backslash = 0;
        let mut at = start;
        for (slot, c) in masks.iter_mut().zip(&classes).take(filled) {
            backslash |= c.backslash;
            if c.high {
                let end = input.len().min(at + BLOCK);
                self.non_ascii = Some(match self.non_ascii {
                    Some((from, _)) => (from, end),
                    None => (at, end),
                });
            }
            let (mask, escaped) = tokens(&mut carry, &mut errors, c, &prefix);
            *slot = mask;
            if escaped != 0 && bad_escapes(input, at, escaped) {
                errors |= 1;
            }
            at += BLOCK;
        }
        self.carry = carry;
        self.errors |= errors;
        self.window_backslash = backslash != 0;
        filled
    }
}

/// The token mask of a block from its byte classes, and its escaped characters; carries
/// state to the next block and adds control bytes inside strings to `errors`.
#[inline(always)]
fn tokens(
    carry: &mut Carry,
    errors: &mut u64,
    c: &Classes,
    prefix: &impl Fn(u64) -> u64,
) -> (u64, u64) {
    // Escaped characters: those after an odd run of backslashes (simdjson's subtraction
    // trick: a run starting on an even bit carries through to the character after it
    // exactly when its length is odd).
    let escaped = if c.backslash == 0 {
        let escaped = carry.escaped;
        carry.escaped = 0;
        escaped
    } else {
        let potential = c.backslash & !carry.escaped;
        let maybe_escaped = potential << 1;
        let code = ((maybe_escaped | ODD_BITS).wrapping_sub(potential)) ^ ODD_BITS;
        let escaped = code ^ (c.backslash | carry.escaped);
        carry.escaped = (code & c.backslash) >> 63;
        escaped
    };
    let quote = c.quote & !escaped;
    // Bit i: an odd number of quotes at or before i (the opening quote and a string's
    // content; not its closing quote).
    let in_string = prefix(quote) ^ carry.in_string;
    carry.in_string = 0u64.wrapping_sub(in_string >> 63);
    let string = in_string | quote;
    let other = !(c.op | c.ws | string);
    let run_starts = other & !((other << 1) | carry.other);
    carry.other = other >> 63;
    *errors |= c.ctrl & in_string;
    ((c.op & !string) | quote | run_starts, escaped)
}

/// [`prefix_xor`] by one carry-less multiplication by all ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2,pclmulqdq")]
#[inline]
fn prefix_xor_clmul(x: u64) -> u64 {
    use core::arch::x86_64::{
        _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set1_epi8, _mm_set_epi64x,
    };
    let product = _mm_clmulepi64_si128(_mm_set_epi64x(0, x as i64), _mm_set1_epi8(-1), 0);
    _mm_cvtsi128_si64(product) as u64
}

/// Bit i: the XOR of bits 0..=i.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// Whether some escaped character of the block at `at` (bits of `escaped`) does not make
/// an escape JSON knows. A backslash outside strings is refused by stage 2 anyway (it is
/// no token JSON has), so every escaped character is checked.
#[inline(never)]
fn bad_escapes(input: &[u8], at: usize, mut escaped: u64) -> bool {
    while escaped != 0 {
        let p = at + escaped.trailing_zeros() as usize;
        escaped &= escaped - 1;
        match input.get(p) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
            Some(b'u') => {
                let hex = input.get(p + 1..p + 5);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return true;
                }
            }
            _ => return true,
        }
    }
    false
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;

/// Bit 7 of each byte of `x` that is zero (exact: no borrow crosses bytes).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// Bit 7 of each byte of `x` that equals `b`.
#[inline(always)]
fn eq_bytes(x: u64, b: u8) -> u64 {
    zero_bytes(x ^ (u64::from(b) * ONES))
}

/// The bit-7 flags of a word's bytes gathered into eight bits, byte `j` to bit `j` (the
/// products land on distinct bits, so nothing carries).
#[inline(always)]
fn gather(flags: u64) -> u64 {
    ((flags >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// The portable kernel: eight bytes at a time.
#[inline(always)]
fn classify_portable(block: &[u8; BLOCK]) -> Classes {
    let mut c = Classes::default();
    let mut high = 0u64;
    for (i, word) in block.chunks_exact(8).enumerate() {
        let x = word
            .first_chunk::<8>()
            .map_or(0, |w| u64::from_le_bytes(*w));
        let shift = 8 * i;
        let curly = x | (0x20 * ONES);
        c.quote |= gather(eq_bytes(x, b'"')) << shift;
        c.backslash |= gather(eq_bytes(x, b'\\')) << shift;
        c.op |= gather(
            eq_bytes(curly, b'{')
                | eq_bytes(curly, b'}')
                | eq_bytes(curly, b':')
                | eq_bytes(curly, b','),
        ) << shift;
        c.ws |= gather(
            eq_bytes(x, b' ') | eq_bytes(x, b'\t') | eq_bytes(x, b'\n') | eq_bytes(x, b'\r'),
        ) << shift;
        // Below 0x20: the low seven bits plus 0x60 stay below 0x80, and bit 7 is clear.
        let below = !(((x & LOW7).wrapping_add((0x80 - 0x20) * ONES)) | x) & !LOW7;
        c.ctrl |= gather(below) << shift;
        high |= x;
    }
    c.high = high & !LOW7 != 0;
    c
}

/// The x86_64 baseline kernel: SSE2, 16 bytes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn classify_sse2(block: &[u8; BLOCK]) -> Classes {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128,
    };
    let mut c = Classes::default();
    let mut high = _mm_setzero_si128();
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: `chunk` is 16 readable bytes, and `_mm_loadu_si128` reads 16 bytes with
        // no alignment requirement.
        let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
        let shift = 16 * i;
        let splat = |b: u8| _mm_set1_epi8(b as i8);
        let eq = |x: __m128i, b: u8| _mm_cmpeq_epi8(x, splat(b));
        let bits = |m: __m128i| u64::from(_mm_movemask_epi8(m) as u16) << shift;
        let curly = _mm_or_si128(v, splat(0x20));
        c.quote |= bits(eq(v, b'"'));
        c.backslash |= bits(eq(v, b'\\'));
        c.op |= bits(_mm_or_si128(
            _mm_or_si128(eq(curly, b'{'), eq(curly, b'}')),
            _mm_or_si128(eq(curly, b':'), eq(curly, b',')),
        ));
        c.ws |= bits(_mm_or_si128(
            _mm_or_si128(eq(v, b' '), eq(v, b'\t')),
            _mm_or_si128(eq(v, b'\n'), eq(v, b'\r')),
        ));
        c.ctrl |= bits(_mm_cmpeq_epi8(_mm_min_epu8(v, splat(0x1F)), v));
        high = _mm_or_si128(high, v);
    }
    c.high = _mm_movemask_epi8(high) != 0;
    c
}

/// Whitespace by low nibble: an entry equals the byte exactly for space, tab, line feed
/// and carriage return (simdjson's table; every other entry differs from any byte whose
/// low nibble is its index).
const WS_TABLE: [u8; 16] = [
    b' ', 100, 100, 100, 17, 100, 113, 2, 100, b'\t', b'\n', 112, 100, b'\r', 100, 100,
];

/// Operators by low nibble, compared with the byte with bit 5 set (`[` `]` become `{` `}`).
const OP_TABLE: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b':', b'{', b',', b'}', 0, 0];

/// The AVX2 kernel, 32 bytes at a time; whitespace and operators by table lookup.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn classify_avx2(block: &[u8; BLOCK]) -> Classes {
    use core::arch::x86_64::{
        __m256i, _mm256_broadcastsi128_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256,
        _mm256_min_epu8, _mm256_movemask_epi8, _mm256_or_si256, _mm256_set1_epi8,
        _mm256_shuffle_epi8, _mm_loadu_si128,
    };
    // SAFETY: each table is 16 readable bytes; unaligned loads.
    let (ws_table, op_table) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(WS_TABLE.as_ptr().cast())),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(OP_TABLE.as_ptr().cast())),
        )
    };
    let splat = |b: u8| _mm256_set1_epi8(b as i8);
    // SAFETY: `block` is 64 readable bytes, and `_mm256_loadu_si256` reads 32 bytes with
    // no alignment requirement, from offset 0 and offset 32.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(block.as_ptr().cast::<__m256i>()),
            _mm256_loadu_si256(block.as_ptr().add(32).cast::<__m256i>()),
        )
    };
    let bits = |f: &dyn Fn(__m256i) -> __m256i| {
        let low = u64::from(_mm256_movemask_epi8(f(lo)) as u32);
        let high = core::hint::black_box(u64::from(_mm256_movemask_epi8(f(hi)) as u32));
        low | (high << 32)
    };
    Classes {
        quote: bits(&|v| _mm256_cmpeq_epi8(v, splat(b'"'))),
        backslash: bits(&|v| _mm256_cmpeq_epi8(v, splat(b'\\'))),
        // A byte with bit 7 set shuffles to 0, which no such byte equals.
        ws: bits(&|v| _mm256_cmpeq_epi8(_mm256_shuffle_epi8(ws_table, v), v)),
        op: bits(&|v| {
            _mm256_cmpeq_epi8(
                _mm256_shuffle_epi8(op_table, v),
                _mm256_or_si256(v, splat(0x20)),
            )
        }),
        ctrl: bits(&|v| _mm256_cmpeq_epi8(_mm256_min_epu8(v, splat(0x1F)), v)),
        high: _mm256_movemask_epi8(_mm256_or_si256(lo, hi)) != 0,
    }
}

/// The WebAssembly kernel: simd128, 16 bytes at a time; whitespace and operators by table
/// lookup.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn classify_simd128(block: &[u8; BLOCK]) -> Classes {
    use core::arch::wasm32::{
        i8x16_bitmask, i8x16_eq, i8x16_swizzle, u8x16_lt, u8x16_splat, v128, v128_and, v128_load,
        v128_or,
    };
    // SAFETY: each table is 16 readable bytes; `v128_load` has no alignment requirement.
    let (ws_table, op_table) = unsafe {
        (
            v128_load(WS_TABLE.as_ptr().cast::<v128>()),
            v128_load(OP_TABLE.as_ptr().cast::<v128>()),
        )
    };
    let mut c = Classes::default();
    let mut high = u8x16_splat(0);
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: `chunk` is 16 readable bytes; `v128_load` has no alignment requirement.
        let v = unsafe { v128_load(chunk.as_ptr().cast::<v128>()) };
        let shift = 16 * i;
        let bits = |m: v128| u64::from(i8x16_bitmask(m)) << shift;
        // The low nibble indexes the tables; a byte with bit 7 set equals no entry.
        let low = v128_and(v, u8x16_splat(0x0F));
        c.quote |= bits(i8x16_eq(v, u8x16_splat(b'"')));
        c.backslash |= bits(i8x16_eq(v, u8x16_splat(b'\\')));
        c.ws |= bits(i8x16_eq(i8x16_swizzle(ws_table, low), v));
        c.op |= bits(i8x16_eq(
            i8x16_swizzle(op_table, low),
            v128_or(v, u8x16_splat(0x20)),
        ));
        c.ctrl |= bits(u8x16_lt(v, u8x16_splat(0x20)));
        high = v128_or(high, v);
    }
    c.high = i8x16_bitmask(high) != 0;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The classes of a block, byte by byte.
    fn classes_by_byte(block: &[u8; BLOCK]) -> Classes {
        let mut c = Classes::default();
        for (i, &b) in block.iter().enumerate() {
            let bit = 1u64 << i;
            let set = |mask: &mut u64, yes: bool| {
                if yes {
                    *mask |= bit
                }
            };
            set(&mut c.quote, b == b'"');
            set(&mut c.backslash, b == b'\\');
            set(
                &mut c.op,
                matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',' | 0x0C | 0x1A),
            );
            set(&mut c.ws, matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
            set(&mut c.ctrl, b < 0x20);
            c.high |= b >= 0x80;
        }
        c
    }

    /// A small deterministic generator.
    struct Mix(u64);
    impl Mix {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    /// Bytes drawn mostly from JSON's structural alphabet, so that runs of backslashes,
    /// strings and operators are common.
    fn jsonish(mix: &mut Mix, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"\"\\\\\"{}[]:, \t\n\rab0u19eE-+.\x01\x1f\x7f";
        (0..len)
            .map(|_| match mix.next() % 8 {
                0 => (mix.next() % 256) as u8,
                _ => ALPHABET[(mix.next() as usize) % ALPHABET.len()],
            })
            .collect()
    }

    #[test]
    fn every_kernel_classifies_every_byte_as_the_byte_by_byte_definition() {
        let mut all = [0u8; 256];
        for (i, b) in all.iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut mix = Mix(7);
        let mut blocks: Vec<[u8; BLOCK]> = all
            .chunks_exact(BLOCK)
            .map(|c| *c.first_chunk::<BLOCK>().unwrap())
            .collect();
        for _ in 0..500 {
            let bytes = jsonish(&mut mix, BLOCK);
            blocks.push(*bytes.first_chunk::<BLOCK>().unwrap());
        }
        for kernel in Kernel::all() {
            for block in &blocks {
                let got = match kernel {
                    Kernel::Portable => classify_portable(block),
                    // SAFETY (both): SSE2 is x86_64's baseline, and Kernel::all lists AVX2
                    // only where the CPU has it.
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Sse2 => unsafe { classify_sse2(block) },
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 => unsafe { classify_avx2(block) },
                    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                    Kernel::Simd128 => classify_simd128(block),
                };
                assert_eq!(got, classes_by_byte(block), "{kernel:?} on {block:?}");
            }
        }
    }

    /// What stage 1 computes, restated byte by byte: the token starts and whether it
    /// finds an error.
    fn tokens_by_byte(input: &[u8]) -> (Vec<usize>, bool) {
        let mut tokens = Vec::new();
        let mut error = false;
        let mut in_string = false;
        let mut run = 0usize; // backslashes just before this byte
        let mut prev_other = false;
        for (i, &b) in input.iter().enumerate() {
            let escaped = run % 2 == 1;
            run = if b == b'\\' { run + 1 } else { 0 };
            if escaped {
                let known = match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => true,
                    b'u' => input
                        .get(i + 1..i + 5)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
                    _ => false,
                };
                error |= !known;
            }
            let quote = b == b'"' && !escaped;
            let op = matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',' | 0x0C | 0x1A);
            let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
            if quote {
                tokens.push(i);
                in_string = !in_string;
                prev_other = false;
                continue;
            }
            if in_string {
                error |= b < 0x20;
                prev_other = false;
                continue;
            }
            let other = !op && !ws;
            if op || (other && !prev_other) {
                tokens.push(i);
            }
            prev_other = other;
        }
        (tokens, error || in_string || run % 2 == 1)
    }

    fn tokens_by_simd(kernel: Kernel, input: &[u8]) -> (Vec<usize>, bool) {
        let mut ix = Indexer::with_kernel(kernel);
        let mut masks = vec![0u64; input.len().div_ceil(BLOCK)];
        for (w, window) in masks.chunks_mut(WINDOW).enumerate() {
            ix.window(input, w * WINDOW * BLOCK, window);
        }
        let mut tokens = Vec::new();
        for (b, mask) in masks.iter().enumerate() {
            let mut bits = *mask;
            while bits != 0 {
                tokens.push(BLOCK * b + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
        let failed = ix.errors != 0 || !ix.ended_cleanly();
        // `index` says the same, UTF-8 aside.
        assert_eq!(
            index_with(kernel, input).is_none(),
            failed || std::str::from_utf8(input).is_err()
        );
        (tokens, failed)
    }

    #[test]
    fn tokens_and_errors_match_the_byte_by_byte_definition() {
        let mut mix = Mix(11);
        let mut inputs: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            br#"{"a":"b\"c","d":[1,2.5e3,true,null],"e\\":"\u00e9"}"#.to_vec(),
            br#""\\\\\"\\""#.to_vec(),
            b"\"a\\".to_vec(),
            b"\"\\u12".to_vec(),
            b"\"\\u12G4\"".to_vec(),
            "\"日本語\" \u{1F600}".as_bytes().to_vec(),
        ];
        for len in [1, 63, 64, 65, 127, 128, 129, 500, 4095, 4096, 4097, 9000] {
            for _ in 0..20 {
                inputs.push(jsonish(&mut mix, len));
            }
        }
        // Runs of backslashes of every length across a block boundary.
        for run in 0..70 {
            for at in [0usize, 30, 60, 63, 64] {
                let mut s = vec![b'a'; at];
                s.insert(0, b'"');
                s.extend(std::iter::repeat_n(b'\\', run));
                s.extend_from_slice(b"\"x\"]");
                inputs.push(s);
            }
        }
        for kernel in Kernel::all() {
            for input in &inputs {
                assert_eq!(
                    tokens_by_simd(kernel, input),
                    tokens_by_byte(input),
                    "{kernel:?} on {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn utf8_is_checked_on_the_non_ascii_span_only() {
        let mut body = vec![b' '; 200];
        body.extend_from_slice("\"日本\"".as_bytes());
        body.extend(vec![b' '; 300]);
        assert!(index(&body).is_some());
        let cut = body.len() - 300 - 2;
        body.remove(cut);
        assert!(index(&body).is_none(), "a split character is refused");
        assert!(index(b"\"\xff\"").is_none());
    }
}
