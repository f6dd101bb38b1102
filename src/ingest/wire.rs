//! The protobuf wire format, read and written by hand for the two protobuf push formats
//! (client_golang's delimited `MetricFamily` and OTLP's `ExportMetricsServiceRequest`).
//!
//! [`Reader`] is a bounds-checked cursor: every length is checked against the bytes left
//! before anything is taken, so a truncated or garbage body is an error naming what went
//! wrong, never a panic or an allocation larger than the body. Nothing is copied until a
//! caller asks for a string. [`Writer`] writes the few small messages poolwatch answers
//! with (OTLP responses and statuses).

/// Wire type of varints (`int32`, `int64`, `uint32`, `uint64`, `bool`, enums).
pub(crate) const VARINT: u8 = 0;
/// Wire type of `fixed64`, `sfixed64` and `double`.
pub(crate) const FIXED64: u8 = 1;
/// Wire type of strings, bytes, embedded messages and packed repeated fields.
pub(crate) const LEN: u8 = 2;
/// Wire type of `fixed32`, `sfixed32` and `float`.
pub(crate) const FIXED32: u8 = 5;

/// A bounds-checked cursor over protobuf bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Bytes read so far (for error messages).
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err("truncated varint".to_string());
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err("varint overflows 64 bits".to_string());
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".to_string())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "truncated: {n} bytes announced, {} left",
                    self.buf.len() - self.pos
                )
            })?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    pub(crate) fn length_delimited(&mut self) -> Result<&'a [u8], String> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| "length does not fit in memory".to_string())?;
        self.take(n)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, String> {
        let bytes = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn double(&mut self) -> Result<f64, String> {
        self.fixed64().map(f64::from_bits)
    }

    pub(crate) fn string(&mut self, what: &str) -> Result<String, String> {
        self.str(what).map(str::to_string)
    }

    /// A string field, borrowed from the body.
    pub(crate) fn str(&mut self, what: &str) -> Result<&'a str, String> {
        let bytes = self.length_delimited()?;
        std::str::from_utf8(bytes).map_err(|_| format!("{what} is not valid UTF-8"))
    }

    /// The next field's number and wire type.
    pub(crate) fn key(&mut self) -> Result<(u64, u8), String> {
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err("field number 0".to_string());
        }
        Ok((field, (key & 7) as u8))
    }

    /// Skips a field the caller does not use.
    pub(crate) fn skip(&mut self, wire: u8) -> Result<(), String> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.length_delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            other => Err(format!("unsupported wire type {other}")),
        }
    }

    /// Checks the wire type of a known field.
    pub(crate) fn expect(&self, field: &str, wire: u8, want: u8) -> Result<(), String> {
        if wire == want {
            Ok(())
        } else {
            Err(format!(
                "field {field} has wire type {wire}, expected {want}"
            ))
        }
    }
}

/// Builds a protobuf message in memory.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    /// An integer field (`int32`, `int64` and `uint*` alike; negative values take ten
    /// bytes, as protobuf writes them). Zero is left out, as proto3 does.
    pub(crate) fn int(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v as u64);
        }
    }

    /// A string field; the empty string is left out, as proto3 does.
    pub(crate) fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    /// An embedded message (always written, even when empty: its presence means something).
    pub(crate) fn message(&mut self, field: u32, m: Writer) {
        self.bytes(field, &m.buf);
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_writer_writes_the_reader_reads() {
        let mut inner = Writer::default();
        inner.int(1, 300);
        inner.string(2, "é and more");
        inner.int(3, -1);
        inner.int(4, 0);
        let mut outer = Writer::default();
        outer.message(1, inner);
        outer.message(2, Writer::default());
        let bytes = outer.finish();

        let mut r = Reader::new(&bytes);
        assert_eq!(r.key().unwrap(), (1, LEN));
        let mut m = Reader::new(r.length_delimited().unwrap());
        assert_eq!(m.key().unwrap(), (1, VARINT));
        assert_eq!(m.varint().unwrap(), 300);
        assert_eq!(m.key().unwrap(), (2, LEN));
        assert_eq!(m.str("s").unwrap(), "é and more");
        assert_eq!(m.key().unwrap(), (3, VARINT));
        assert_eq!(m.varint().unwrap() as i64, -1);
        assert!(m.is_empty(), "zero is not written");
        assert_eq!(r.key().unwrap(), (2, LEN));
        assert_eq!(r.length_delimited().unwrap(), b"");
        assert!(r.is_empty());
    }

    #[test]
    fn lengths_past_the_end_and_long_varints_are_errors() {
        assert!(Reader::new(&[0x0a, 0x05, 1, 2]).skip_field().is_err());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint()
                .is_err()
        );
        assert!(Reader::new(&[0x00]).key().is_err(), "field number 0");
        assert!(Reader::new(&[0x0b]).skip_field().is_err(), "wire type 3");
    }

    impl Reader<'_> {
        fn skip_field(&mut self) -> Result<(), String> {
            let (_, wire) = self.key()?;
            self.skip(wire)
        }
    }
}
