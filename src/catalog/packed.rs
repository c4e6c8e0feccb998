//! A run's quality (its profile and check results, as JSON) stored packed: zstd against a
//! dictionary of the JSON's own vocabulary, about a fifth of the text. Quality is most of a
//! run's row (about 660 of 1,500 bytes a run in the retention benchmark), and the catalog
//! keeps a row per run; the text alone would keep a catalog over 1 KB a run.
//!
//! A packed value starts with the number of the dictionary it was packed with. A catalog
//! keeps its rows for years, so a dictionary, once released, never changes: a better one is
//! added under the next number, and every number ever written stays readable.

use super::CatalogError;
use std::io::Read as _;

/// Why a run's quality could not be packed or read back.
#[derive(Debug, thiserror::Error)]
pub enum PackedError {
    #[error("could not pack a run's quality: {0}")]
    Pack(std::io::Error),
    #[error("no dictionary {0} to pack a run's quality with (this is likely a bug)")]
    NoDictionary(u8),
    #[error(
        "a run's stored quality cannot be read ({0}); the catalog was written by a newer sluice or is damaged"
    )]
    Unreadable(String),
}

/// The dictionary packs are written with now.
const CURRENT: u8 = 1;

/// Dictionary 1: the keys, the check names and the detail templates of the quality JSON
/// (`quality::Quality`), as raw content. zstd finds its matches in it as if it preceded each
/// value, so what every value repeats (the keys, `"severity":"error","passed":true`, the
/// details' words) costs a few bytes instead of its length.
const DICTIONARY_1: &[u8] = include_bytes!("quality_dictionary_1.txt");

/// zstd's level: higher levels find little more in values this small, and cost more time.
const LEVEL: i32 = 3;

fn dictionary(number: u8) -> Option<&'static [u8]> {
    match number {
        1 => Some(DICTIONARY_1),
        _ => None,
    }
}

thread_local! {
    /// A compressor with the current dictionary loaded, kept per thread: loading the
    /// dictionary costs more than packing one value, and a catalog generator packs millions.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `json` packed with the current dictionary.
pub(super) fn pack(json: &str) -> Result<Vec<u8>, CatalogError> {
    let io = |e: std::io::Error| CatalogError::Packed(PackedError::Pack(e));
    COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some(c) => c,
            None => {
                let dict = dictionary(CURRENT)
                    .ok_or(CatalogError::Packed(PackedError::NoDictionary(CURRENT)))?;
                slot.insert(zstd::bulk::Compressor::with_dictionary(LEVEL, dict).map_err(io)?)
            }
        };
        let mut out = Vec::with_capacity(1 + json.len() / 3);
        out.push(CURRENT);
        out.extend(compressor.compress(json.as_bytes()).map_err(io)?);
        Ok(out)
    })
}

/// The JSON in a packed value.
pub(super) fn unpack(packed: &[u8]) -> Result<String, CatalogError> {
    let bad = |what: String| CatalogError::Packed(PackedError::Unreadable(what));
    let (&number, body) = packed
        .split_first()
        .ok_or_else(|| bad("it is empty".into()))?;
    let dict = dictionary(number).ok_or_else(|| bad(format!("unknown dictionary {number}")))?;
    let mut decoder =
        zstd::stream::read::Decoder::with_dictionary(body, dict).map_err(|e| bad(e.to_string()))?;
    let mut json = String::with_capacity(body.len() * 5);
    decoder
        .read_to_string(&mut json)
        .map_err(|e| bad(e.to_string()))?;
    Ok(json)
}

/// A run's quality as stored: runs written before packing hold the text, later ones the
/// packed value; a run holds at most one of them.
pub(super) fn stored(
    text: Option<String>,
    packed: Option<Vec<u8>>,
) -> Result<Option<String>, CatalogError> {
    match (text, packed) {
        (Some(t), _) => Ok(Some(t)),
        (None, Some(p)) => unpack(&p).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUALITY: &str = r#"{"profile":{"rows":3,"columns":{"hour":{"null_fraction":0.0,"distinct":1,"min":"2024-01-02T09:00:00Z","max":"2024-01-02T09:00:00Z"},"n":{"null_fraction":0.0,"distinct":3,"min":"1","max":"3","mean":2.0}}},"checks":[{"name":"not_null_n","severity":"error","passed":true,"failing":0,"detail":"0 row(s) with a null in n"},{"name":"volume","severity":"error","passed":true,"failing":3,"detail":"3 row(s), 0% above the median 3 of the last 7 partition(s) (allowed ±50%)"}]}"#;

    #[test]
    fn a_packed_quality_reads_back_the_same_and_smaller() {
        let packed = pack(QUALITY).expect("packs");
        assert_eq!(packed[0], CURRENT);
        assert!(
            packed.len() * 3 < QUALITY.len(),
            "{} bytes packed of {}",
            packed.len(),
            QUALITY.len()
        );
        assert_eq!(unpack(&packed).expect("unpacks"), QUALITY);
        // Text no dictionary foresaw packs and unpacks too.
        let odd = "{\"checks\":[{\"detail\":\"ünïcödé ✓ and a long tail \"}]}".repeat(40);
        assert_eq!(unpack(&pack(&odd).expect("packs")).expect("unpacks"), odd);
    }

    /// Packed values already in catalogs are read with the dictionary of their number: a
    /// released dictionary must never change.
    #[test]
    fn dictionary_1_is_what_was_released() {
        assert_eq!(
            blake3::hash(DICTIONARY_1).to_hex().as_str(),
            "f51352213c7336fb15cb95dd7c3844999a9f33ac78141a00afa79ed8a175efaf",
            "dictionary 1 changed: packed values in existing catalogs would no longer read; add a dictionary 2 instead"
        );
    }

    #[test]
    fn damage_is_an_error_that_says_so() {
        let mut packed = pack(QUALITY).expect("packs");
        for bad in [vec![], vec![9u8, 1, 2], {
            packed.truncate(packed.len() / 2);
            packed
        }] {
            let e = unpack(&bad).expect_err("refused").to_string();
            assert!(e.contains("cannot be read"), "{e}");
        }
    }

    #[test]
    fn text_stored_before_packing_is_read_as_it_is() {
        assert_eq!(
            stored(Some("{}".into()), None).expect("reads").as_deref(),
            Some("{}")
        );
        let packed = pack(QUALITY).expect("packs");
        assert_eq!(
            stored(None, Some(packed)).expect("reads").as_deref(),
            Some(QUALITY)
        );
        assert_eq!(stored(None, None).expect("reads"), None);
    }
}
