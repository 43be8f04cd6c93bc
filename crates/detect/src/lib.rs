//! Face detection for facerec: MTCNN, the detector that gives photos their five landmarks
//! (for `facerec detect`, `align`, `embed` and `compare` on photos).
//!
//! It builds on `facerec-model`'s layers, weight loading and error type, and returns
//! `facerec-data`'s landmarks, so that neither of those crates needs the other.

pub mod mtcnn;
