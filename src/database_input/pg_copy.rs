//! PostgreSQL's binary COPY stream (`COPY (query) TO STDOUT (FORMAT binary)`), decoded
//! into a database input's batches. A COPY sends each row as the server holds it, without
//! the per-row work of the query protocol's row API, which is what made reading a large
//! partition slower than `psql \copy` and a file input.
//!
//! The format: a signature, flags and a header extension; then per row a 16-bit count of
//! fields and per field a 32-bit length (-1 for NULL) and that many bytes, big-endian,
//! each in its type's binary form; then a count of -1. Dates are days and timestamps
//! microseconds since 2000-01-01.

use super::batches::{Failure, Sink, Values};
use crate::schema::ColumnType;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// 1970-01-01 to 2000-01-01, in days and in microseconds.
const EPOCH_DAYS: i32 = 10_957;
const EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Bytes received but not yet decoded (a row split across messages), and how far the
/// stream has come.
pub struct CopyDecoder {
    types: Vec<ColumnType>,
    buf: Vec<u8>,
    header_read: bool,
    ended: bool,
}

impl CopyDecoder {
    /// A decoder of rows of the declared column types, in order.
    pub fn new(types: Vec<ColumnType>) -> CopyDecoder {
        CopyDecoder {
            types,
            buf: Vec::new(),
            header_read: false,
            ended: false,
        }
    }

    /// Decodes what `chunk` completes into `sink`.
    pub fn feed(&mut self, chunk: &[u8], sink: &mut Sink) -> Result<(), Failure> {
        if self.ended && !chunk.is_empty() {
            return Err(decode("data after the end of the COPY stream"));
        }
        self.buf.extend_from_slice(chunk);
        let mut at = 0;
        if !self.header_read {
            match header_len(&self.buf)? {
                Some(n) => {
                    at = n;
                    self.header_read = true;
                }
                None => return Ok(()),
            }
        }
        while let Some(len) = self.next_row(at, sink)? {
            at += len;
            if self.ended {
                break;
            }
        }
        self.buf.drain(..at);
        Ok(())
    }

    /// The stream ended: it must have said so itself.
    pub fn finish(&self) -> Result<(), Failure> {
        if self.ended && self.buf.is_empty() {
            Ok(())
        } else {
            Err(decode("the COPY stream ended before its end marker"))
        }
    }

    /// Decodes the row at `at` into `sink` if the buffer holds all of it: its length.
    fn next_row(&mut self, at: usize, sink: &mut Sink) -> Result<Option<usize>, Failure> {
        let rest = &self.buf[at..];
        let Some(count) = rest.get(..2) else {
            return Ok(None);
        };
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count == -1 {
            self.ended = true;
            return Ok(Some(2));
        }
        if count as usize != self.types.len() {
            return Err(decode(&format!(
                "a row of {count} values where {} columns are declared",
                self.types.len()
            )));
        }
        // Whole before anything is pushed: a row split across messages waits for the rest.
        let mut len = 2;
        for _ in 0..count {
            let Some(n) = rest.get(len..len + 4) else {
                return Ok(None);
            };
            let n = i32::from_be_bytes([n[0], n[1], n[2], n[3]]);
            len += 4 + usize::try_from(n).unwrap_or(0);
            if rest.len() < len {
                return Ok(None);
            }
        }
        let types = &self.types;
        sink.push_with(|columns| {
            let mut p = 2;
            for (column, ty) in columns.iter_mut().zip(types) {
                let n = i32::from_be_bytes([rest[p], rest[p + 1], rest[p + 2], rest[p + 3]]);
                p += 4;
                let cell = match usize::try_from(n) {
                    Ok(n) => {
                        p += n;
                        Some(&rest[p - n..p])
                    }
                    Err(_) => None,
                };
                push(column, *ty, cell)?;
            }
            Ok(())
        })?;
        Ok(Some(len))
    }
}

/// The header's length, once the buffer holds all of it.
fn header_len(buf: &[u8]) -> Result<Option<usize>, Failure> {
    if buf.len() < SIGNATURE.len() + 8 {
        return Ok(None);
    }
    if &buf[..SIGNATURE.len()] != SIGNATURE {
        return Err(decode("the server's answer is not a binary COPY stream"));
    }
    let e = &buf[SIGNATURE.len() + 4..SIGNATURE.len() + 8];
    let extension = u32::from_be_bytes([e[0], e[1], e[2], e[3]]) as usize;
    let len = SIGNATURE.len() + 8 + extension;
    Ok((buf.len() >= len).then_some(len))
}

fn decode(why: &str) -> Failure {
    Failure::Decode(why.to_string())
}

/// A cell of a declared type onto its column, as `postgres::kind` made it.
fn push(column: &mut Values, ty: ColumnType, cell: Option<&[u8]>) -> Result<(), String> {
    match column {
        Values::Bool(v) => v.push(cell.map(|b| fixed::<1>(b).map(|b| b[0] != 0)).transpose()?),
        Values::I16(v) => v.push(cell.map(|b| fixed(b).map(i16::from_be_bytes)).transpose()?),
        Values::I32(v) => v.push(
            cell.map(|b| {
                let n = i32::from_be_bytes(fixed(b)?);
                if ty != ColumnType::Date {
                    return Ok(n);
                }
                n.checked_add(EPOCH_DAYS)
                    .filter(|_| n != i32::MAX && n != i32::MIN)
                    .ok_or_else(|| "a date of infinity, which DATE cannot carry".to_string())
            })
            .transpose()?,
        ),
        Values::I64(v) => v.push(
            cell.map(|b| {
                let n = i64::from_be_bytes(fixed(b)?);
                if !matches!(ty, ColumnType::Timestamp | ColumnType::TimestampNtz) {
                    return Ok(n);
                }
                n.checked_add(EPOCH_MICROS)
                    .filter(|_| n != i64::MAX && n != i64::MIN)
                    .ok_or_else(|| {
                        "a timestamp of infinity, which TIMESTAMP cannot carry".to_string()
                    })
            })
            .transpose()?,
        ),
        Values::F32(v) => v.push(cell.map(|b| fixed(b).map(f32::from_be_bytes)).transpose()?),
        Values::F64(v) => v.push(cell.map(|b| fixed(b).map(f64::from_be_bytes)).transpose()?),
        Values::Text(v) => v.push(
            cell.map(|b| {
                std::str::from_utf8(b)
                    .map(str::to_string)
                    .map_err(|_| "text that is not UTF-8".to_string())
            })
            .transpose()?,
        ),
        Values::Bytes(v) => v.push(cell.map(<[u8]>::to_vec)),
    }
    Ok(())
}

/// A value of exactly `N` bytes.
fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("a value of {} bytes where {N} were expected", b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Name;
    use crate::schema::Column;
    use deltalake::arrow::array::{Array as _, AsArray as _};
    use deltalake::arrow::datatypes::{Date32Type, Int64Type, TimestampMicrosecondType};

    fn columns() -> Vec<Column> {
        [
            ("id", ColumnType::BigInt),
            ("day", ColumnType::Date),
            ("at", ColumnType::Timestamp),
            ("note", ColumnType::String),
            ("ok", ColumnType::Boolean),
        ]
        .into_iter()
        .map(|(n, ty)| Column {
            name: Name::new(n).unwrap(),
            ty,
            nullable: true,
            default: None,
            comment: None,
        })
        .collect()
    }

    /// A binary COPY stream of `rows` (each cell its binary form, or NULL).
    fn stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0i32.to_be_bytes());
        out.extend(0i32.to_be_bytes());
        for row in rows {
            out.extend((row.len() as i16).to_be_bytes());
            for cell in row {
                match cell {
                    Some(b) => {
                        out.extend((b.len() as i32).to_be_bytes());
                        out.extend(b);
                    }
                    None => out.extend((-1i32).to_be_bytes()),
                }
            }
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    fn rows() -> Vec<Vec<Option<Vec<u8>>>> {
        vec![
            vec![
                Some(1i64.to_be_bytes().to_vec()),
                // 2024-01-01: 8,766 days after 2000-01-01.
                Some(8766i32.to_be_bytes().to_vec()),
                Some(0i64.to_be_bytes().to_vec()),
                Some(b"caf\xc3\xa9".to_vec()),
                Some(vec![1]),
            ],
            vec![Some(2i64.to_be_bytes().to_vec()), None, None, None, None],
        ]
    }

    /// Feeds `parts` of a stream through a decoder into a scratch file: the batches read
    /// back, or why the stream was refused.
    fn decoded(parts: &[&[u8]]) -> Result<Vec<deltalake::arrow::array::RecordBatch>, String> {
        let file = tempfile::NamedTempFile::new().unwrap();
        let cols = columns();
        let mut sink =
            Sink::new(file.reopen().unwrap(), &cols, super::super::postgres::kind).unwrap();
        let mut d = CopyDecoder::new(cols.iter().map(|c| c.ty).collect());
        let said = |f: Failure| match f {
            Failure::Decode(why) => why,
            _ => "another failure".to_string(),
        };
        for p in parts {
            d.feed(p, &mut sink).map_err(said)?;
        }
        d.finish().map_err(said)?;
        sink.finish().unwrap();
        let reader =
            deltalake::arrow::ipc::reader::StreamReader::try_new(file.reopen().unwrap(), None)
                .unwrap();
        Ok(reader.map(Result::unwrap).collect())
    }

    #[test]
    fn rows_split_anywhere_across_messages_read_as_the_server_sent_them() {
        let bytes = stream(&rows());
        for split in 0..=bytes.len() {
            let batches = decoded(&[&bytes[..split], &bytes[split..]]).unwrap();
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(n, 2, "split at {split}");
        }
        let b = &decoded(&[&bytes]).unwrap()[0];
        assert_eq!(b.column(0).as_primitive::<Int64Type>().value(1), 2);
        // Days and microseconds since 1970, as Arrow counts them.
        assert_eq!(b.column(1).as_primitive::<Date32Type>().value(0), 19723);
        assert_eq!(
            b.column(2)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            946_684_800_000_000
        );
        assert_eq!(b.column(3).as_string::<i32>().value(0), "café");
        assert!(b.column(4).as_boolean().value(0));
        assert!((1..5).all(|c| b.column(c).is_null(1)));
    }

    #[test]
    fn a_stream_cut_short_or_a_value_its_column_cannot_take_is_refused() {
        let bytes = stream(&rows());
        let e = decoded(&[&bytes[..bytes.len() - 2]]).unwrap_err();
        assert!(e.contains("before its end marker"), "{e}");
        let mut infinite = rows();
        infinite[0][1] = Some(i32::MAX.to_be_bytes().to_vec());
        let e = decoded(&[&stream(&infinite)]).unwrap_err();
        assert!(e.contains("infinity"), "{e}");
        let mut short = rows();
        short[0][0] = Some(vec![1, 2]);
        let e = decoded(&[&stream(&short)]).unwrap_err();
        assert!(e.contains("2 bytes where 8"), "{e}");
        let e = decoded(&[b"SELECT 1 is not a COPY stream"]).unwrap_err();
        assert!(e.contains("not a binary COPY stream"), "{e}");
    }
}
