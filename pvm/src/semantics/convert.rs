//! Conversions between integers, f32 and f64: WebAssembly's, bit for bit
//! as x86-64's SSE converts (a NaN converted between widths keeps its sign
//! and the top of its payload, quieted).

use crate::trap::TrapKind;

#[inline(always)]
fn f32_of(x: u64) -> f32 {
    f32::from_bits(x as u32)
}
#[inline(always)]
fn f64_of(x: u64) -> f64 {
    f64::from_bits(x)
}
#[inline(always)]
fn bits32(f: f32) -> u64 {
    u64::from(f.to_bits())
}

/// f64 to i64, truncating, saturating, NaN to 0 (`i64.trunc_sat_f64_s`).
#[inline(always)]
pub fn ftoi(x: u64) -> u64 {
    f64_of(x) as i64 as u64
}
/// i64 to f64, rounding to nearest (`f64.convert_i64_s`).
#[inline(always)]
pub fn itof(x: u64) -> u64 {
    (x as i64 as f64).to_bits()
}

/// A trapping truncation of `v` (already known not NaN when `ok` holds)
/// into the open range (lo, hi).
#[inline(always)]
fn checked(nan: bool, v: f64, lo: f64, hi: f64) -> Result<f64, TrapKind> {
    if nan {
        return Err(TrapKind::InvalidConversion);
    }
    if v > lo && v < hi {
        Ok(v.trunc())
    } else {
        Err(TrapKind::IntegerOverflow)
    }
}

/// The trapping truncations: NaN is an invalid conversion, a value whose
/// truncation is out of the integer's range an overflow.
#[inline(always)]
pub fn i32_trunc_f32_s(x: u64) -> Result<u64, TrapKind> {
    let f = f32_of(x);
    checked(f.is_nan(), f64::from(f), -2_147_483_649.0, 2_147_483_648.0).map(|v| u64::from(v as i32 as u32))
}
#[inline(always)]
pub fn i32_trunc_f32_u(x: u64) -> Result<u64, TrapKind> {
    let f = f32_of(x);
    checked(f.is_nan(), f64::from(f), -1.0, 4_294_967_296.0).map(|v| u64::from(v as u32))
}
#[inline(always)]
pub fn i32_trunc_f64_s(x: u64) -> Result<u64, TrapKind> {
    let f = f64_of(x);
    checked(f.is_nan(), f, -2_147_483_649.0, 2_147_483_648.0).map(|v| u64::from(v as i32 as u32))
}
#[inline(always)]
pub fn i32_trunc_f64_u(x: u64) -> Result<u64, TrapKind> {
    let f = f64_of(x);
    checked(f.is_nan(), f, -1.0, 4_294_967_296.0).map(|v| u64::from(v as u32))
}
/// (the bounds of the 64-bit ones are exact in f64: ±2^63, 2^64)
#[inline(always)]
pub fn i64_trunc_f32_s(x: u64) -> Result<u64, TrapKind> {
    let f = f32_of(x);
    i64_trunc_s(f.is_nan(), f64::from(f))
}
#[inline(always)]
pub fn i64_trunc_f64_s(x: u64) -> Result<u64, TrapKind> {
    let f = f64_of(x);
    i64_trunc_s(f.is_nan(), f)
}
#[inline(always)]
fn i64_trunc_s(nan: bool, f: f64) -> Result<u64, TrapKind> {
    if nan {
        return Err(TrapKind::InvalidConversion);
    }
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        Ok(f as i64 as u64)
    } else {
        Err(TrapKind::IntegerOverflow)
    }
}
#[inline(always)]
pub fn i64_trunc_f32_u(x: u64) -> Result<u64, TrapKind> {
    let f = f32_of(x);
    checked(f.is_nan(), f64::from(f), -1.0, 18_446_744_073_709_551_616.0).map(|v| v as u64)
}
#[inline(always)]
pub fn i64_trunc_f64_u(x: u64) -> Result<u64, TrapKind> {
    let f = f64_of(x);
    checked(f.is_nan(), f, -1.0, 18_446_744_073_709_551_616.0).map(|v| v as u64)
}

/// The saturating truncations: NaN gives 0, out-of-range values the
/// nearest bound (Rust's `as` does exactly this).
#[inline(always)]
pub fn i32_trunc_sat_f32_s(x: u64) -> u64 {
    u64::from(f32_of(x) as i32 as u32)
}
#[inline(always)]
pub fn i32_trunc_sat_f32_u(x: u64) -> u64 {
    u64::from(f32_of(x) as u32)
}
#[inline(always)]
pub fn i32_trunc_sat_f64_s(x: u64) -> u64 {
    u64::from(f64_of(x) as i32 as u32)
}
#[inline(always)]
pub fn i32_trunc_sat_f64_u(x: u64) -> u64 {
    u64::from(f64_of(x) as u32)
}
#[inline(always)]
pub fn i64_trunc_sat_f32_s(x: u64) -> u64 {
    f32_of(x) as i64 as u64
}
#[inline(always)]
pub fn i64_trunc_sat_f32_u(x: u64) -> u64 {
    f32_of(x) as u64
}
#[inline(always)]
pub fn i64_trunc_sat_f64_u(x: u64) -> u64 {
    f64_of(x) as u64
}

/// Integers to floats, rounding to nearest, ties to even.
#[inline(always)]
pub fn f32_convert_i32_s(x: u64) -> u64 {
    bits32(x as u32 as i32 as f32)
}
#[inline(always)]
pub fn f32_convert_i32_u(x: u64) -> u64 {
    bits32(x as u32 as f32)
}
#[inline(always)]
pub fn f32_convert_i64_s(x: u64) -> u64 {
    bits32(x as i64 as f32)
}
#[inline(always)]
pub fn f32_convert_i64_u(x: u64) -> u64 {
    bits32(x as f32)
}
#[inline(always)]
pub fn f64_convert_i32_s(x: u64) -> u64 {
    f64::from(x as u32 as i32).to_bits()
}
#[inline(always)]
pub fn f64_convert_i32_u(x: u64) -> u64 {
    f64::from(x as u32).to_bits()
}
#[inline(always)]
pub fn f64_convert_i64_u(x: u64) -> u64 {
    (x as f64).to_bits()
}

/// f64 to f32, rounding to nearest; a NaN keeps its sign and the top 22
/// bits of its payload, quieted (`cvtsd2ss`).
#[inline(always)]
pub fn f32_demote_f64(x: u64) -> u64 {
    let f = f64_of(x);
    if f.is_nan() {
        let sign = (x >> 63) << 31;
        let payload = (x >> 29) & 0x3f_ffff;
        return sign | 0x7fc0_0000 | payload;
    }
    bits32(f as f32)
}
/// f32 to f64, exact; a NaN keeps its sign and payload, quieted
/// (`cvtss2sd`).
#[inline(always)]
pub fn f64_promote_f32(x: u64) -> u64 {
    let f = f32_of(x);
    if f.is_nan() {
        let sign = ((x >> 31) & 1) << 63;
        let payload = (x & 0x3f_ffff) << 29;
        return sign | 0x7ff8_0000_0000_0000 | payload;
    }
    f64::from(f).to_bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::arch::x86_64::*;

    #[test]
    fn trapping_truncations_trap_exactly_outside_the_range() {
        let f32b = |f: f32| u64::from(f.to_bits());
        assert_eq!(i32_trunc_f32_s(f32b(-2147483648.0)), Ok(0x8000_0000));
        assert_eq!(i32_trunc_f32_s(f32b(2147483648.0)), Err(TrapKind::IntegerOverflow));
        assert_eq!(i32_trunc_f32_s(f32b(f32::NAN)), Err(TrapKind::InvalidConversion));
        assert_eq!(i32_trunc_f64_s((-2147483648.9f64).to_bits()), Ok(0x8000_0000));
        assert_eq!(i32_trunc_f64_s((-2147483649.0f64).to_bits()), Err(TrapKind::IntegerOverflow));
        assert_eq!(i32_trunc_f64_u((-0.9f64).to_bits()), Ok(0));
        assert_eq!(i32_trunc_f64_u((-1.0f64).to_bits()), Err(TrapKind::IntegerOverflow));
        assert_eq!(i32_trunc_f64_u(4294967295.9f64.to_bits()), Ok(0xffff_ffff));
        assert_eq!(i64_trunc_f64_s((-9223372036854775808.0f64).to_bits()), Ok(i64::MIN as u64));
        assert_eq!(i64_trunc_f64_s(9223372036854775808.0f64.to_bits()), Err(TrapKind::IntegerOverflow));
        assert_eq!(i64_trunc_f64_u(18446744073709549568.0f64.to_bits()), Ok(18446744073709549568));
        assert_eq!(i64_trunc_f64_u(18446744073709551616.0f64.to_bits()), Err(TrapKind::IntegerOverflow));
        assert_eq!(i64_trunc_f32_u(f32b(-0.5)), Ok(0));
    }

    #[test]
    fn saturating_and_converting_edges() {
        assert_eq!(i32_trunc_sat_f64_s(1e10f64.to_bits()), 0x7fff_ffff);
        assert_eq!(i32_trunc_sat_f64_u((-5.0f64).to_bits()), 0);
        assert_eq!(i64_trunc_sat_f64_u(f64::NAN.to_bits()), 0);
        assert_eq!(f32_convert_i32_u(0xffff_ffff), u64::from(4294967296.0f32.to_bits()));
        assert_eq!(f64_convert_i64_u(u64::MAX), 18446744073709551616.0f64.to_bits());
        assert_eq!(f32_convert_i64_u(0x8000_0080_0000_0001), u64::from(9223373136366403584.0f32.to_bits()));
        assert_eq!(f64_convert_i32_s(0xffff_fffe), (-2.0f64).to_bits());
    }

    #[test]
    fn nans_change_width_as_sse_does() {
        for x in [0x7ff4_0000_0000_0abcu64, 0xfff8_1234_5678_9abc, 0x7ff0_0000_0000_0001, 0x3ff0_0000_0000_0000] {
            // SAFETY: SSE2 conversions of a register value.
            let sse = unsafe { _mm_cvtss_f32(_mm_cvtsd_ss(_mm_setzero_ps(), _mm_set_sd(f64::from_bits(x)))) };
            assert_eq!(f32_demote_f64(x), u64::from(sse.to_bits()), "{x:#x}");
        }
        for x in [0x7fa0_0abcu64, 0xffc0_1234, 0x7f80_0001, 0x3f80_0000] {
            // SAFETY: SSE2 conversions of a register value.
            let sse = unsafe { _mm_cvtsd_f64(_mm_cvtss_sd(_mm_setzero_pd(), _mm_set_ss(f32::from_bits(x as u32)))) };
            assert_eq!(f64_promote_f32(x), sse.to_bits(), "{x:#x}");
        }
    }
}
