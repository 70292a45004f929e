//! Float arrays in fitted state: base64 of little-endian f32, checked when read.

use base64::Engine as _;

pub fn encode_f32(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|w| w.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("not base64: {0}")]
    Base64(String),
    #[error("{bytes} bytes, expected 4 x {expected}")]
    Length { bytes: usize, expected: String },
    #[error("a value is not finite")]
    NonFinite,
}

/// The floats of `text`, which must hold exactly `expected` finite values.
pub fn decode_f32(text: &str, expected: Option<usize>) -> Result<Vec<f32>, DecodeError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| DecodeError::Base64(e.to_string()))?;
    if bytes.len() % 4 != 0 || expected.is_some_and(|n| n.checked_mul(4) != Some(bytes.len())) {
        return Err(DecodeError::Length { bytes: bytes.len(), expected: expected.map_or("n".into(), |n| n.to_string()) });
    }
    let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if values.iter().any(|w| !w.is_finite()) {
        return Err(DecodeError::NonFinite);
    }
    Ok(values)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_and_bad_text_is_refused() {
        let v = [0.25f32, -1.5e-7, 3.0];
        assert_eq!(decode_f32(&encode_f32(&v), Some(3)).unwrap(), v);
        assert!(decode_f32(&encode_f32(&v), Some(2)).is_err());
        assert!(decode_f32("%%%", None).is_err());
        assert!(decode_f32(&encode_f32(&[f32::NAN]), None).is_err());
    }
}
