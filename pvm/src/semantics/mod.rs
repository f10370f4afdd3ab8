//! What the instructions mean: pure functions both engines use. The
//! interpreter calls them; the translator inlines the simple ones and calls
//! these same functions for the rest, so the two cannot disagree. Floats:
//! `float`; conversions: `convert`.

mod convert;
mod float;

pub use convert::*;
pub use float::*;

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
/// For a signed division by `y`, a positive power of two: the dividend
/// biased up by `y - 1` when negative (so a shift truncates towards zero),
/// and the shift. `None` for any other divisor.
#[inline(always)]
fn pow2_biased(x: u64, y: u64) -> Option<(u64, u32)> {
    ((y as i64) > 0 && y.is_power_of_two())
        .then(|| (x.wrapping_add(((x as i64) >> 63) as u64 & (y - 1)), y.trailing_zeros()))
}
/// [`div_s`] by an immediate: by a positive power of two it is a shift,
/// which an interpreter computes far faster than `idiv`.
#[inline(always)]
pub fn div_s_imm(x: u64, y: u64) -> Result<u64, TrapKind> {
    match pow2_biased(x, y) {
        Some((t, k)) => Ok(((t as i64) >> k) as u64),
        None => div_s(x, y),
    }
}
/// [`rem_s`] by an immediate: by a positive power of two it is the
/// dividend less its quotient's multiple (a bias, a mask, a subtract).
#[inline(always)]
pub fn rem_s_imm(x: u64, y: u64) -> Result<u64, TrapKind> {
    match pow2_biased(x, y) {
        Some((t, _)) => Ok(x.wrapping_sub(t & y.wrapping_neg())),
        None => rem_s(x, y),
    }
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

/// The 32-bit forms: the low 32 bits of the operands, the result
/// zero-extended to 64 bits.
#[inline(always)]
const fn lo(x: u64) -> u32 {
    x as u32
}
#[inline(always)]
const fn w(x: u32) -> u64 {
    x as u64
}
#[inline(always)]
pub fn add32(x: u64, y: u64) -> u64 {
    w(lo(x).wrapping_add(lo(y)))
}
#[inline(always)]
pub fn sub32(x: u64, y: u64) -> u64 {
    w(lo(x).wrapping_sub(lo(y)))
}
#[inline(always)]
pub fn mul32(x: u64, y: u64) -> u64 {
    w(lo(x).wrapping_mul(lo(y)))
}
#[inline(always)]
pub fn and32(x: u64, y: u64) -> u64 {
    w(lo(x) & lo(y))
}
#[inline(always)]
pub fn or32(x: u64, y: u64) -> u64 {
    w(lo(x) | lo(y))
}
#[inline(always)]
pub fn xor32(x: u64, y: u64) -> u64 {
    w(lo(x) ^ lo(y))
}
/// 32-bit shifts and rotates use the low 5 bits of the count.
#[inline(always)]
pub fn shl32(x: u64, y: u64) -> u64 {
    w(lo(x) << (y & 31))
}
#[inline(always)]
pub fn shr32(x: u64, y: u64) -> u64 {
    w(lo(x) >> (y & 31))
}
#[inline(always)]
pub fn sar32(x: u64, y: u64) -> u64 {
    w(((lo(x) as i32) >> (y & 31)) as u32)
}
#[inline(always)]
pub fn rotl32(x: u64, y: u64) -> u64 {
    w(lo(x).rotate_left((y & 31) as u32))
}
#[inline(always)]
pub fn rotr32(x: u64, y: u64) -> u64 {
    w(lo(x).rotate_right((y & 31) as u32))
}
/// 64-bit rotates use the low 6 bits of the count.
#[inline(always)]
pub fn rotl(x: u64, y: u64) -> u64 {
    x.rotate_left((y & 63) as u32)
}
#[inline(always)]
pub fn rotr(x: u64, y: u64) -> u64 {
    x.rotate_right((y & 63) as u32)
}
#[inline(always)]
pub fn seq32(x: u64, y: u64) -> u64 {
    u64::from(lo(x) == lo(y))
}
#[inline(always)]
pub fn sne32(x: u64, y: u64) -> u64 {
    u64::from(lo(x) != lo(y))
}
#[inline(always)]
pub fn slt32(x: u64, y: u64) -> u64 {
    u64::from((lo(x) as i32) < (lo(y) as i32))
}
#[inline(always)]
pub fn sltu32(x: u64, y: u64) -> u64 {
    u64::from(lo(x) < lo(y))
}
#[inline(always)]
pub fn sle32(x: u64, y: u64) -> u64 {
    u64::from((lo(x) as i32) <= (lo(y) as i32))
}
#[inline(always)]
pub fn sleu32(x: u64, y: u64) -> u64 {
    u64::from(lo(x) <= lo(y))
}
/// Bit counts: of zero, the width.
#[inline(always)]
pub fn clz(x: u64) -> u64 {
    u64::from(x.leading_zeros())
}
#[inline(always)]
pub fn ctz(x: u64) -> u64 {
    u64::from(x.trailing_zeros())
}
#[inline(always)]
pub fn popcnt(x: u64) -> u64 {
    u64::from(x.count_ones())
}
#[inline(always)]
pub fn clz32(x: u64) -> u64 {
    u64::from(lo(x).leading_zeros())
}
#[inline(always)]
pub fn ctz32(x: u64) -> u64 {
    u64::from(lo(x).trailing_zeros())
}
#[inline(always)]
pub fn popcnt32(x: u64) -> u64 {
    u64::from(lo(x).count_ones())
}
#[inline(always)]
pub fn zext32(x: u64) -> u64 {
    x & 0xffff_ffff
}
/// Sign-extends the low byte (half) to 32 bits, zero-extended to 64.
#[inline(always)]
pub fn sext8_32(x: u64) -> u64 {
    w(x as u8 as i8 as i32 as u32)
}
#[inline(always)]
pub fn sext16_32(x: u64) -> u64 {
    w(x as u16 as i16 as i32 as u32)
}

/// Signed division that traps on `i64::MIN / -1` (WebAssembly's).
#[inline(always)]
pub fn div_st(x: u64, y: u64) -> Result<u64, TrapKind> {
    if y == 0 {
        return Err(TrapKind::DivisionByZero);
    }
    (x as i64).checked_div(y as i64).map(|q| q as u64).ok_or(TrapKind::IntegerOverflow)
}
/// 32-bit signed division: traps on a zero divisor and on
/// `i32::MIN / -1`.
#[inline(always)]
pub fn div_s32(x: u64, y: u64) -> Result<u64, TrapKind> {
    let (x, y) = (lo(x) as i32, lo(y) as i32);
    if y == 0 {
        return Err(TrapKind::DivisionByZero);
    }
    x.checked_div(y).map(|q| w(q as u32)).ok_or(TrapKind::IntegerOverflow)
}
#[inline(always)]
pub fn div_u32(x: u64, y: u64) -> Result<u64, TrapKind> {
    lo(x).checked_div(lo(y)).map(w).ok_or(TrapKind::DivisionByZero)
}
/// 32-bit signed remainder, the sign of the dividend; `i32::MIN % -1` is 0.
#[inline(always)]
pub fn rem_s32(x: u64, y: u64) -> Result<u64, TrapKind> {
    let (x, y) = (lo(x) as i32, lo(y) as i32);
    if y == 0 {
        return Err(TrapKind::DivisionByZero);
    }
    Ok(w(x.wrapping_rem(y) as u32))
}
#[inline(always)]
pub fn rem_u32(x: u64, y: u64) -> Result<u64, TrapKind> {
    lo(x).checked_rem(lo(y)).map(w).ok_or(TrapKind::DivisionByZero)
}

/// The address of a linear-memory access: the low 32 bits of the base
/// plus the sign-extended offset, and whether `n` bytes there end at or
/// below `end`. Out of the linear memory: the trap.
#[inline(always)]
pub fn linear_address(base: u64, offset: i32, n: u64, end: u64) -> Result<u64, TrapKind> {
    let addr = (base & 0xffff_ffff).wrapping_add(offset as i64 as u64);
    match addr.checked_add(n) {
        Some(last) if last <= end => Ok(addr),
        _ => Err(TrapKind::LinearOutOfBounds { addr, size: n }),
    }
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
    fn division_by_an_immediate_agrees_with_the_general_division() {
        let mut dividends = vec![0, 1, 2, 3, u64::MAX, u64::MAX - 1, i64::MIN as u64, i64::MAX as u64];
        for k in 0..64 {
            let p = 1u64 << k;
            let n = p.wrapping_neg();
            dividends.extend([p, p - 1, p.wrapping_add(1), n, n.wrapping_sub(1), n.wrapping_add(1)]);
        }
        // every power of two (the fast path: 2^63 is negative, so not on it),
        // their neighbours and negatives, zero and -1
        let mut divisors = vec![0, u64::MAX, 3, 5, 7, 10];
        for k in 0..64 {
            let p = 1u64 << k;
            divisors.extend([p, p.wrapping_add(1), p.wrapping_neg()]);
        }
        for &y in &divisors {
            for &x in &dividends {
                assert_eq!(div_s_imm(x, y), div_s(x, y), "{x:#x} / {y:#x}");
                assert_eq!(rem_s_imm(x, y), rem_s(x, y), "{x:#x} % {y:#x}");
            }
        }
    }

    #[test]
    fn shifts_mask_the_count() {
        assert_eq!(shl(1, 65), 2);
        assert_eq!(sar(u64::MAX << 4, 2), u64::MAX << 2);
        assert_eq!(shr(u64::MAX, 63), 1);
    }

    #[test]
    fn thirty_two_bit_forms_zero_extend_and_mask_their_counts() {
        assert_eq!(add32(u64::MAX, 2), 1);
        assert_eq!(mul32(0x1_0000_0003, 0x1_0000_0005), 15);
        assert_eq!(shl32(1, 33), 2);
        assert_eq!(sar32(0x8000_0000, 31), 0xffff_ffff);
        assert_eq!(rotl32(0x8000_0001, 1), 3);
        assert_eq!(rotr(1, 65), 1 << 63);
        assert_eq!((slt32(0xffff_ffff, 0), sltu32(0xffff_ffff, 0)), (1, 0));
        assert_eq!((clz32(0), ctz32(0), popcnt32(u64::MAX)), (32, 32, 32));
        assert_eq!((clz(0), ctz(1 << 63), popcnt(0)), (64, 63, 0));
        assert_eq!((sext8_32(0x80), sext16_32(0x1_8000), zext32(u64::MAX)), (0xffff_ff80, 0xffff_8000, 0xffff_ffff));
    }

    #[test]
    fn wasm_divisions_trap_on_overflow() {
        assert_eq!(div_s32(0x8000_0000, 0xffff_ffff), Err(TrapKind::IntegerOverflow));
        assert_eq!(rem_s32(0x8000_0000, 0xffff_ffff), Ok(0));
        assert_eq!(div_s32(0xffff_fff9, 2), Ok(0xffff_fffd));
        assert_eq!(div_u32(7, 0x1_0000_0000), Err(TrapKind::DivisionByZero));
        assert_eq!(div_st(i64::MIN as u64, u64::MAX), Err(TrapKind::IntegerOverflow));
        assert_eq!(div_st(9, 0), Err(TrapKind::DivisionByZero));
    }

    #[test]
    fn linear_addresses_use_the_low_32_bits_and_check_the_end() {
        assert_eq!(linear_address(0xffff_ffff_0000_0010, 8, 4, 0x100), Ok(0x18));
        assert_eq!(linear_address(0xfc, 0, 4, 0x100), Ok(0xfc));
        assert!(linear_address(0xfd, 0, 4, 0x100).is_err());
        assert!(linear_address(0, -1, 1, 0x100).is_err());
        // (an end past guest memory passes: the machine's own bounds decide)
        assert_eq!(linear_address(0xffff_ffff, i32::MAX, 8, u64::MAX), Ok(0x1_7fff_fffe));
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
