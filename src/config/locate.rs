//! Maps YAML paths (`routes[2].utterances[0]`) to the line and column where their value starts.
//!
//! serde gives us typed structs but forgets positions; validation of *semantic* rules (duplicate names,
//! blank utterances, ...) still has to tell the operator where in the file the problem is. A second pass over
//! the raw YAML events with yaml-rust2's marked parser records every node's position under the same path
//! syntax that validation uses.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// Positions of every node of a YAML document, keyed by path.
#[derive(Debug, Default)]
pub struct PositionMap {
    positions: HashMap<String, Position>,
}

impl PositionMap {
    /// Parses `source` and records the position of every node. A document that does not parse yields an
    /// empty map (the serde pass reports syntax errors with their own position).
    pub fn build(source: &str) -> Self {
        let mut recorder = Recorder::default();
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut recorder, false).is_err() {
            return Self::default();
        }
        Self {
            positions: recorder.positions,
        }
    }

    /// The position of the node at `path` exactly (a mapping's is that of its first key), if recorded.
    pub fn get(&self, path: &str) -> Option<Position> {
        self.positions.get(path).copied()
    }

    /// The position of the node at `path`, or of its nearest recorded ancestor (a missing field is reported
    /// where its parent mapping starts), or line 1 column 1.
    pub fn find(&self, path: &str) -> Position {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(cut) => p = &p[..cut],
                None => {
                    return self
                        .positions
                        .get("")
                        .copied()
                        .unwrap_or(Position { line: 1, column: 1 });
                }
            }
        }
    }
}

enum Frame {
    Map {
        path: String,
        /// The key whose value comes next; `None` while a key is expected.
        key: Option<String>,
        /// Where the mapping event was reported. Block mappings report a position past their first key,
        /// so the mapping is placed at its first key instead, and at this mark only if it has no keys.
        start: Position,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    positions: HashMap<String, Position>,
}

impl Recorder {
    /// Called for every node that starts at `mark`. Returns the node's path, or `None` when the node is a
    /// mapping key (which is remembered, not recorded).
    fn enter_node(&mut self, scalar: Option<&str>, mark: Marker, record: bool) -> Option<String> {
        let pos = to_position(mark);
        let path = match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                p
            }
            Some(Frame::Map { path, key, .. }) => match key.take() {
                None => {
                    // This node is a key. Complex keys are not used by our schema; record them as "?".
                    *key = Some(scalar.unwrap_or("?").to_string());
                    let map_path = path.clone();
                    self.positions.entry(map_path).or_insert(pos);
                    return None;
                }
                Some(k) if path.is_empty() => k,
                Some(k) => format!("{path}.{k}"),
            },
        };
        if record {
            self.positions.entry(path.clone()).or_insert(pos);
        }
        Some(path)
    }
}

fn to_position(mark: Marker) -> Position {
    Position {
        line: mark.line(),
        // yaml-rust2 markers count columns from 0.
        column: mark.col() + 1,
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                self.enter_node(Some(&value), mark, true);
            }
            Event::Alias(_) => {
                self.enter_node(None, mark, true);
            }
            Event::MappingStart(..) => {
                let path = self.enter_node(None, mark, false).unwrap_or_default();
                self.stack.push(Frame::Map {
                    path,
                    key: None,
                    start: to_position(mark),
                });
            }
            Event::SequenceStart(..) => {
                let path = self.enter_node(None, mark, true).unwrap_or_default();
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { path, start, .. }) = self.stack.pop() {
                    self.positions.entry(path).or_insert(start);
                }
            }
            Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_nested_paths() {
        let src = "a: 1\nroutes:\n  - name: x\n    utterances:\n      - hello\n      - \"  \"\n";
        let map = PositionMap::build(src);
        assert_eq!(map.find("a"), Position { line: 1, column: 4 });
        assert_eq!(
            map.find("routes[0].name"),
            Position {
                line: 3,
                column: 11
            }
        );
        assert_eq!(
            map.find("routes[0].utterances[1]"),
            Position { line: 6, column: 9 }
        );
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(
            map.find("routes[0].threshold"),
            Position { line: 3, column: 5 }
        );
    }
}
