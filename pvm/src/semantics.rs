//! What the instructions mean: pure functions both engines use. The
//! interpreter calls them; the translator inlines the simple ones and calls
//! these same functions for the rest, so the two cannot disagree.

use crate::trap::TrapKind;

/// Wrapping 64-bit arithmetic and logic.
#[inline(always)]
pub fn add(x: u64, y: u64) -> u64 {
    x.wrapping_add(y)
}
#[inline(always)]
pub fn sub(x: u64, y: u64) -> u64 {
    x.wrapping_sub(y)
}
#[inline(always)]
pub fn mul(x: u64, y: u64) -> u64 {
    x.wrapping_mul(y)
}
/// Signed division, truncating; `i64::MIN / -1` wraps to `i64::MIN`.
#[inline(always)]
pub fn div_s(x: u64, y: u64) -> Result<u64, TrapKind> {
    if y == 0 {
        return Err(TrapKind::DivisionByZero);
    }
    Ok((x as i64).wrapping_div(y as i64) as u64)
}
#[inline(always)]
pub fn div_u(x: u64, y: u64) -> Result<u64, TrapKind> {
    x.checked_div(y).ok_or(TrapKind::DivisionByZero)
}
/// Signed remainder, sign of the dividend; `i64::MIN % -1` is 0.
#[inline(always)]
pub fn rem_s(x: u64, y: u64) -> Result<u64, TrapKind> {
    if y == 0 {
        return Err(TrapKind::DivisionByZero);
    }
    Ok((x as i64).wrapping_rem(y as i64) as u64)
}
#[inline(always)]
pub fn rem_u(x: u64, y: u64) -> Result<u64, TrapKind> {
    x.checked_rem(y).ok_or(TrapKind::DivisionByZero)
}
/// Shifts use the low 6 bits of the count, as x86-64 does.
#[inline(always)]
pub fn shl(x: u64, y: u64) -> u64 {
    x << (y & 63)
}
#[inline(always)]
pub fn shr(x: u64, y: u64) -> u64 {
    x >> (y & 63)
}
#[inline(always)]
pub fn sar(x: u64, y: u64) -> u64 {
    ((x as i64) >> (y & 63)) as u64
}

/// Comparisons set 1 or 0.
#[inline(always)]
pub fn seq(x: u64, y: u64) -> u64 {
    u64::from(x == y)
}
#[inline(always)]
pub fn sne(x: u64, y: u64) -> u64 {
    u64::from(x != y)
}
#[inline(always)]
pub fn slt(x: u64, y: u64) -> u64 {
    u64::from((x as i64) < (y as i64))
}
#[inline(always)]
pub fn sltu(x: u64, y: u64) -> u64 {
    u64::from(x < y)
}
#[inline(always)]
pub fn sle(x: u64, y: u64) -> u64 {
    u64::from((x as i64) <= (y as i64))
}
#[inline(always)]
pub fn sleu(x: u64, y: u64) -> u64 {
    u64::from(x <= y)
}

/// f64 arithmetic on bit patterns held in the integer registers.
#[inline(always)]
fn f(x: u64) -> f64 {
    f64::from_bits(x)
}
#[inline(always)]
pub fn fadd(x: u64, y: u64) -> u64 {
    (f(x) + f(y)).to_bits()
}
#[inline(always)]
pub fn fsub(x: u64, y: u64) -> u64 {
    (f(x) - f(y)).to_bits()
}
#[inline(always)]
pub fn fmul(x: u64, y: u64) -> u64 {
    (f(x) * f(y)).to_bits()
}
#[inline(always)]
pub fn fdiv(x: u64, y: u64) -> u64 {
    (f(x) / f(y)).to_bits()
}
/// Float comparisons: false when either side is NaN.
#[inline(always)]
pub fn feq(x: u64, y: u64) -> u64 {
    u64::from(f(x) == f(y))
}
#[inline(always)]
pub fn flt(x: u64, y: u64) -> u64 {
    u64::from(f(x) < f(y))
}
#[inline(always)]
pub fn fle(x: u64, y: u64) -> u64 {
    u64::from(f(x) <= f(y))
}
#[inline(always)]
pub fn fsqrt(x: u64) -> u64 {
    f(x).sqrt().to_bits()
}
#[inline(always)]
pub fn fneg(x: u64) -> u64 {
    x ^ (1 << 63)
}
#[inline(always)]
pub fn itof(x: u64) -> u64 {
    (x as i64 as f64).to_bits()
}
/// Truncates toward zero; saturates at the i64 range; NaN gives 0.
#[inline(always)]
pub fn ftoi(x: u64) -> u64 {
    f(x) as i64 as u64
}

/// Branch conditions.
#[inline(always)]
pub fn lt(x: u64, y: u64) -> bool {
    (x as i64) < (y as i64)
}
#[inline(always)]
pub fn ge(x: u64, y: u64) -> bool {
    (x as i64) >= (y as i64)
}

/// `lih`: replaces the high 32 bits.
#[inline(always)]
pub fn lih(old: u64, imm: i32) -> u64 {
    (old & 0xffff_ffff) | (u64::from(imm as u32) << 32)
}

/// Sign- and zero-extension of loaded values.
#[inline(always)]
pub fn sext8(x: u64) -> u64 {
    x as u8 as i8 as i64 as u64
}
#[inline(always)]
pub fn sext16(x: u64) -> u64 {
    x as u16 as i16 as i64 as u64
}
#[inline(always)]
pub fn sext32(x: u64) -> u64 {
    x as u32 as i32 as i64 as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_edges() {
        assert_eq!(div_s(7u64.wrapping_neg(), 2), Ok(3u64.wrapping_neg()));
        assert_eq!(rem_s(7u64.wrapping_neg(), 2), Ok(1u64.wrapping_neg()));
        assert_eq!(div_s(i64::MIN as u64, u64::MAX), Ok(i64::MIN as u64));
        assert_eq!(rem_s(i64::MIN as u64, u64::MAX), Ok(0));
        assert_eq!(div_u(1, 0), Err(TrapKind::DivisionByZero));
        assert_eq!(rem_s(1, 0), Err(TrapKind::DivisionByZero));
    }

    #[test]
    fn shifts_mask_the_count() {
        assert_eq!(shl(1, 65), 2);
        assert_eq!(sar(u64::MAX << 4, 2), u64::MAX << 2);
        assert_eq!(shr(u64::MAX, 63), 1);
    }

    #[test]
    fn floats_and_conversions() {
        let two = 2.0f64.to_bits();
        assert_eq!(f64::from_bits(fsqrt(fmul(two, two))), 2.0);
        assert_eq!(ftoi((-2.7f64).to_bits()), (-2i64) as u64);
        assert_eq!(ftoi(f64::NAN.to_bits()), 0);
        assert_eq!(ftoi(1e300f64.to_bits()), i64::MAX as u64);
        assert_eq!(f64::from_bits(itof(-3i64 as u64)), -3.0);
        assert_eq!(flt(f64::NAN.to_bits(), two), 0);
        assert_eq!(f64::from_bits(fneg(two)), -2.0);
    }

    #[test]
    fn constants_and_extension() {
        assert_eq!(lih(0x1234_5678, -1), 0xffff_ffff_1234_5678);
        assert_eq!(sext8(0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(sext16(0x7fff), 0x7fff);
        assert_eq!(sext32(0xffff_fffe), u64::MAX - 1);
    }
}
