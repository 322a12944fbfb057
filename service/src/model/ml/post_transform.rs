//! The post-transforms of the ONNX-ML classifiers and regressors, computed in single
//! precision with onnxruntime's own formulas (its logistic, its approximate inverse error
//! function for PROBIT), so probabilities agree with it to the last bits that matter.

use crate::model::ml::attrs::{AttrError, Attrs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostTransform {
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    /// The `post_transform` string attribute (opset 1 to 3).
    pub(crate) fn parse(attrs: &Attrs<'_>) -> Result<Self, AttrError> {
        Ok(match attrs.string("post_transform")?.unwrap_or("NONE") {
            "NONE" => PostTransform::None,
            "SOFTMAX" => PostTransform::Softmax,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => return Err(attrs.error("post_transform", format!("unknown post transform {other:?}"))),
        })
    }

    /// The integer `post_transform` of ai.onnx.ml opset 5's TreeEnsemble, numbered as
    /// onnxruntime reads it (1 is LOGISTIC, 2 SOFTMAX). The specification's text swaps
    /// those two; we follow the runtime that the exporters' users check against.
    pub(crate) fn from_ort_code(attrs: &Attrs<'_>, code: i64) -> Result<Self, AttrError> {
        Ok(match code {
            0 => PostTransform::None,
            1 => PostTransform::Logistic,
            2 => PostTransform::Softmax,
            3 => PostTransform::SoftmaxZero,
            4 => PostTransform::Probit,
            other => return Err(attrs.error("post_transform", format!("unknown post transform {other}"))),
        })
    }

    /// Applies the transform to one row's scores, in place.
    pub(crate) fn apply(self, scores: &mut [f32]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => scores.iter_mut().for_each(|v| *v = logistic(*v)),
            PostTransform::Probit => scores.iter_mut().for_each(|v| *v = probit(*v)),
            PostTransform::Softmax => softmax(scores),
            PostTransform::SoftmaxZero => softmax_zero(scores),
        }
    }
}

impl PostTransform {
    /// The transform as onnxruntime applies it to whole score matrices (SVM and linear
    /// classifiers): LOGISTIC through MLAS's rational approximation rather than `exp`.
    pub(crate) fn apply_batched(self, scores: &mut [f32]) {
        match self {
            PostTransform::Logistic => scores.iter_mut().for_each(|v| *v = mlas_logistic(*v)),
            other => other.apply(scores),
        }
    }
}

/// MLAS's logistic: a rational polynomial on [-18, 18], each step a fused multiply-add.
/// It differs from the exact function by under 2e-7, but is exactly 0 below -18.
// The constants are written as MLAS writes them; Rust rounds them to f32 as C++ does.
#[allow(clippy::excessive_precision)]
pub(crate) fn mlas_logistic(x: f32) -> f32 {
    let v = x.clamp(-18.0, 18.0);
    let v2 = v * v;
    let p = 4.370_310_125_798_01e-11_f32
        .mul_add(v2, 1.156_273_244_599_42e-7)
        .mul_add(v2, 6.085_748_646_001_43e-5)
        .mul_add(v2, 8.513_771_333_047_01e-3)
        .mul_add(v2, 2.482_879_470_615_29e-1)
        * v;
    let q = 6.102_473_897_556_81e-13_f32
        .mul_add(v2, 5.761_021_369_934_27e-9)
        .mul_add(v2, 6.291_067_850_170_40e-6)
        .mul_add(v2, 1.701_988_173_740_94e-3)
        .mul_add(v2, 1.168_176_569_044_53e-1)
        .mul_add(v2, 9.931_519_210_231_80e-1);
    (p / q + 0.5).clamp(0.0, 1.0)
}

/// onnxruntime's logistic: symmetric around zero, so large negative inputs do not
/// overflow `exp`.
pub(crate) fn logistic(value: f32) -> f32 {
    let v = 1.0 / (1.0 + (-value.abs()).exp());
    if value < 0.0 { 1.0 - v } else { v }
}

pub(crate) fn probit(value: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * value - 1.0)
}

/// The approximation of erf⁻¹ onnxruntime uses (Winitzki's, with a = 0.147).
// Its π is onnxruntime's 3.14159, not f32's, so answers match to the last bit.
#[allow(clippy::approx_constant)]
fn erf_inv(x: f32) -> f32 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (3.14159_f32 * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sign * v3.sqrt()
}

pub(crate) fn softmax(scores: &mut [f32]) {
    let max = scores.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0;
    for v in scores.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    scores.iter_mut().for_each(|v| *v /= sum);
}

/// Softmax over the non-zero scores; zeros stay (nearly) zero.
pub(crate) fn softmax_zero(scores: &mut [f32]) {
    let max = scores.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0;
    for v in scores.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    scores.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_is_symmetric_and_bounded() {
        assert_eq!(logistic(0.0), 0.5);
        assert!((logistic(2.0) + logistic(-2.0) - 1.0).abs() < 1e-7);
        assert_eq!(logistic(-1000.0), 0.0);
        assert_eq!(logistic(1000.0), 1.0);
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut scores = [1.0, 3.0, 2.0];
        softmax(&mut scores);
        assert!((scores.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(scores[1] > scores[2] && scores[2] > scores[0]);
    }

    #[test]
    fn probit_inverts_the_normal_cdf_approximately() {
        // Phi(1) = 0.8413447; the approximation is good to about 1e-3.
        assert!((probit(0.841_344_7) - 1.0).abs() < 2e-3);
        assert_eq!(probit(0.5), 0.0);
    }
}
