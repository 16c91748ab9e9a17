//! Positions of YAML nodes by JSON pointer, so that an error found on the
//! parsed value (by the JSON Schema, serde, or a cross-reference check) can
//! point at the line and column of the key or value in the source text.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

use super::diagnostic::escape_segment;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: m.line().max(1),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

enum Frame {
    Map {
        pointer: String,
        key: Option<String>,
    },
    Seq {
        pointer: String,
        index: usize,
    },
}

impl SpanIndex {
    /// Indexes a YAML document. A syntax error stops indexing where it is;
    /// the positions seen so far stay usable.
    pub fn build(text: &str) -> SpanIndex {
        let mut index = SpanIndex::default();
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        let mut seen_root = false;
        while let Ok((event, marker)) = parser.next_token() {
            match event {
                Event::StreamEnd => break,
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    advance(&mut stack);
                }
                Event::Scalar(..)
                | Event::Alias(..)
                | Event::MappingStart(..)
                | Event::SequenceStart(..) => {
                    // A scalar where a mapping expects a key is the key.
                    if let Some(Frame::Map {
                        pointer,
                        key: key @ None,
                    }) = stack.last_mut()
                    {
                        let name = match &event {
                            Event::Scalar(s, ..) => s.clone(),
                            _ => String::from("?"),
                        };
                        index.keys.insert(
                            format!("{pointer}/{}", escape_segment(&name)),
                            marker.into(),
                        );
                        *key = Some(name);
                        continue;
                    }
                    let pointer = match stack.last() {
                        Some(Frame::Map {
                            pointer,
                            key: Some(k),
                        }) => format!("{pointer}/{}", escape_segment(k)),
                        Some(Frame::Seq { pointer, index }) => format!("{pointer}/{index}"),
                        _ => {
                            if seen_root {
                                // A second document: positions of the first are what matter.
                                break;
                            }
                            seen_root = true;
                            String::new()
                        }
                    };
                    index.values.insert(pointer.clone(), marker.into());
                    match event {
                        Event::MappingStart(..) => stack.push(Frame::Map { pointer, key: None }),
                        Event::SequenceStart(..) => stack.push(Frame::Seq { pointer, index: 0 }),
                        _ => advance(&mut stack),
                    }
                }
                _ => {}
            }
        }
        index
    }

    /// Position of the value at `pointer`, else of its nearest ancestor.
    pub fn value(&self, pointer: &str) -> Pos {
        self.lookup(pointer, false)
    }

    /// Position of the key naming `pointer` (where a mapping entry starts),
    /// else of its value, else of its nearest ancestor.
    pub fn key(&self, pointer: &str) -> Pos {
        self.lookup(pointer, true)
    }

    fn lookup(&self, pointer: &str, prefer_key: bool) -> Pos {
        let mut p = pointer;
        loop {
            if prefer_key && let Some(pos) = self.keys.get(p) {
                return *pos;
            }
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Pos { line: 1, column: 1 },
            }
        }
    }
}

fn advance(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { key, .. }) => *key = None,
        Some(Frame::Seq { index, .. }) => *index += 1,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_values_and_items() {
        let text =
            "id: a\nparams:\n  temperature: 0.2\nmessages:\n  - role: user\n    content: hi\n";
        let idx = SpanIndex::build(text);
        assert_eq!(idx.key("/id"), Pos { line: 1, column: 1 });
        assert_eq!(idx.value("/id"), Pos { line: 1, column: 5 });
        assert_eq!(idx.key("/params/temperature"), Pos { line: 3, column: 3 });
        assert_eq!(
            idx.value("/messages/0/content"),
            Pos {
                line: 6,
                column: 14
            }
        );
        // Unknown pointers fall back to the nearest ancestor.
        assert_eq!(idx.key("/params/nope"), Pos { line: 2, column: 1 });
    }

    #[test]
    fn flow_style_and_escaped_keys() {
        let idx = SpanIndex::build("a: {x/y: [1, 2]}\n");
        assert_eq!(
            idx.value("/a/x~1y/1"),
            Pos {
                line: 1,
                column: 14
            }
        );
    }
}
