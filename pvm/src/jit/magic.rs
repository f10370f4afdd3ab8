//! Signed division by a constant as a multiply and shifts (Hacker's
//! Delight, ch. 10), so `divsi`/`remsi` avoid the slow `idiv`. The
//! translator emits exactly [`div_by_constant`]'s steps.

/// How to divide by a constant `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstDiv {
    /// d = 1: q = n.
    Identity,
    /// d = -1: q = -n (wrapping).
    Negate,
    /// |d| = 2^k: q = (n + ((n >> 63) >>> (64 - k))) >> k, negated if d < 0.
    Shift { k: u32, negative: bool },
    /// q = mulhi(n, m) (+ n if d > 0 and m < 0, - n if d < 0 and m > 0) >> s,
    /// plus 1 if negative.
    Magic { m: i64, s: u32, add: i8 },
}

/// The plan for `d` (`None` for 0, which traps).
pub fn plan(d: i64) -> Option<ConstDiv> {
    match d {
        0 => None,
        1 => Some(ConstDiv::Identity),
        -1 => Some(ConstDiv::Negate),
        _ if d.unsigned_abs().is_power_of_two() => {
            Some(ConstDiv::Shift { k: d.unsigned_abs().trailing_zeros(), negative: d < 0 })
        }
        _ => {
            let (m, s) = magic(d);
            let add = if d > 0 && m < 0 {
                1
            } else if d < 0 && m > 0 {
                -1
            } else {
                0
            };
            Some(ConstDiv::Magic { m, s, add })
        }
    }
}

/// The magic multiplier and shift for signed 64-bit division by `d`
/// (|d| >= 2, not a power of two).
fn magic(d: i64) -> (i64, u32) {
    const TWO63: u64 = 1 << 63;
    let ad = d.unsigned_abs();
    let t = TWO63 + ((d as u64) >> 63);
    let anc = t - 1 - t % ad;
    let mut p = 63u32;
    let (mut q1, mut r1) = (TWO63 / anc, TWO63 - (TWO63 / anc) * anc);
    let (mut q2, mut r2) = (TWO63 / ad, TWO63 - (TWO63 / ad) * ad);
    loop {
        p += 1;
        q1 = q1.wrapping_mul(2);
        r1 = r1.wrapping_mul(2);
        if r1 >= anc {
            q1 = q1.wrapping_add(1);
            r1 = r1.wrapping_sub(anc);
        }
        q2 = q2.wrapping_mul(2);
        r2 = r2.wrapping_mul(2);
        if r2 >= ad {
            q2 = q2.wrapping_add(1);
            r2 = r2.wrapping_sub(ad);
        }
        let delta = ad - r2;
        if !(q1 < delta || (q1 == delta && r1 == 0)) {
            break;
        }
    }
    let m = q2.wrapping_add(1) as i64;
    (if d < 0 { m.wrapping_neg() } else { m }, p - 64)
}

/// The quotient the plan computes, step by step as the emitted code does.
pub fn div_by_constant(n: i64, plan: ConstDiv) -> i64 {
    match plan {
        ConstDiv::Identity => n,
        ConstDiv::Negate => n.wrapping_neg(),
        ConstDiv::Shift { k, negative } => {
            let bias = (((n >> 63) as u64) >> (64 - k)) as i64;
            let q = n.wrapping_add(bias) >> k;
            if negative {
                q.wrapping_neg()
            } else {
                q
            }
        }
        ConstDiv::Magic { m, s, add } => {
            let mut q = ((i128::from(n) * i128::from(m)) >> 64) as i64;
            q = match add {
                1 => q.wrapping_add(n),
                -1 => q.wrapping_sub(n),
                _ => q,
            };
            q >>= s;
            q.wrapping_add(((q as u64) >> 63) as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_wrapping_division_for_many_divisors_and_dividends() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut values = vec![0i64, 1, -1, 2, -2, 7, -7, 100, i64::MAX, i64::MIN, i64::MIN + 1, i64::MAX - 1];
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x as i64);
            values.push((x as i64) >> (x % 63));
        }
        let divisors =
            [2i64, 3, 5, 7, 10, 100, 641, -2, -3, -7, -100, 1 << 40, -(1 << 40), i64::MAX, i64::MIN, 1, -1, 6, 1000003];
        for &d in &divisors {
            let p = plan(d).unwrap();
            for &n in &values {
                assert_eq!(div_by_constant(n, p), n.wrapping_div(d), "{n} / {d} with {p:?}");
            }
        }
        assert_eq!(plan(0), None);
    }
}
