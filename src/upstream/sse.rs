//! An incremental, size-bounded parser for server-sent events (`text/event-stream`).

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Feeds bytes in, gets whole events out.
#[derive(Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    max_event_bytes: usize,
}

impl SseParser {
    /// A parser that refuses events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_event_bytes,
        }
    }

    /// Adds a chunk; returns the events it completed. Fails when an event grows past the limit or is not
    /// UTF-8.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        // CRLF and LF both end lines; dropping CR makes one blank-line search enough.
        self.buf
            .extend(chunk.iter().copied().filter(|&b| b != b'\r'));
        let mut events = Vec::new();
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
            let text = std::str::from_utf8(&raw[..end])
                .map_err(|_| "event stream is not UTF-8".to_string())?;
            if let Some(ev) = parse_event(text) {
                events.push(ev);
            }
        }
        if self.buf.len() > self.max_event_bytes {
            return Err(format!(
                "an event exceeds {} bytes (upstream.max_body_bytes)",
                self.max_event_bytes
            ));
        }
        Ok(events)
    }
}

fn parse_event(text: &str) -> Option<SseEvent> {
    let mut event = None;
    let mut data: Option<String> = None;
    for line in text.lines() {
        if line.starts_with(':') {
            continue; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    data.map(|data| SseEvent { event, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunks_and_line_endings() {
        let mut p = SseParser::new(1024);
        assert!(p.push(b"event: a\r\ndata: {\"x\"").unwrap().is_empty());
        let evs = p
            .push(b":1}\r\n\r\n: ping\n\ndata: one\ndata: two\n\n")
            .unwrap();
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    event: Some("a".into()),
                    data: "{\"x\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "one\ntwo".into()
                },
            ]
        );
    }

    #[test]
    fn bounds_event_size() {
        let mut p = SseParser::new(16);
        assert!(p.push(&[b'a'; 32]).is_err());
    }
}
