//! Property tests of the stream decoders: however the bytes are split into
//! chunks, the same events come out.

use proptest::prelude::*;

use super::wire::{NdjsonDecoder, SseDecoder, SseEvent};
use super::{ChatEvent, EventDecoder, ollama, openai};

/// A recorded upstream answer under `tests/fixtures/`.
fn fixture(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Splits `bytes` at the given cut points (taken modulo the length).
fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts {
        out.push(bytes[start..c].to_vec());
        start = c;
    }
    out.push(bytes[start..].to_vec());
    out
}

fn sse_all(chunks: &[Vec<u8>]) -> Vec<SseEvent> {
    let mut d = SseDecoder::default();
    let mut out: Vec<SseEvent> = chunks.iter().flat_map(|c| d.push(c)).collect();
    out.extend(d.finish());
    out
}

fn openai_all(chunks: &[Vec<u8>]) -> Vec<ChatEvent> {
    let mut d = openai::StreamDecoder::new();
    let mut out: Vec<ChatEvent> = chunks.iter().flat_map(|c| d.push(c).unwrap()).collect();
    out.extend(d.finish().unwrap());
    out
}

fn ollama_all(chunks: &[Vec<u8>]) -> Vec<ChatEvent> {
    let mut d = ollama::StreamDecoder::new();
    let mut out: Vec<ChatEvent> = chunks.iter().flat_map(|c| d.push(c).unwrap()).collect();
    out.extend(d.finish().unwrap());
    out
}

proptest! {
    #[test]
    fn sse_events_do_not_depend_on_chunking(
        datas in prop::collection::vec("[ -~é☀\n]{0,40}", 0..8),
        crlf in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        for d in &datas {
            text.push_str(&format!(": comment{nl}"));
            for line in d.split('\n') {
                text.push_str(&format!("data: {line}{nl}"));
            }
            text.push_str(nl);
        }
        let whole = sse_all(&[text.as_bytes().to_vec()]);
        let expected: Vec<SseEvent> = datas
            .iter()
            .map(|d| SseEvent { event: None, data: d.clone() })
            .collect();
        prop_assert_eq!(&whole, &expected);
        prop_assert_eq!(sse_all(&split(text.as_bytes(), &cuts)), whole);
    }

    #[test]
    fn ndjson_lines_do_not_depend_on_chunking(
        values in prop::collection::vec("[ -~é☀]{0,30}", 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let text: String = values
            .iter()
            .map(|v| format!("{}\n", serde_json::json!({ "s": v })))
            .collect();
        let chunks = split(text.as_bytes(), &cuts);
        let mut d = NdjsonDecoder::default();
        let mut got: Vec<String> = chunks.iter().flat_map(|c| d.push(c)).collect();
        got.extend(d.finish());
        let expected: Vec<String> = values
            .iter()
            .map(|v| serde_json::json!({ "s": v }).to_string())
            .collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn openai_fixture_events_do_not_depend_on_chunking(
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let text = fixture("openai/chat_tool_call_stream.sse");
        let whole = openai_all(&[text.as_bytes().to_vec()]);
        prop_assert_eq!(openai_all(&split(text.as_bytes(), &cuts)), whole);
    }

    #[test]
    fn ollama_fixture_events_do_not_depend_on_chunking(
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let text = fixture("ollama/chat_stream.ndjson");
        let whole = ollama_all(&[text.as_bytes().to_vec()]);
        prop_assert_eq!(whole.len(), 4);
        prop_assert_eq!(ollama_all(&split(text.as_bytes(), &cuts)), whole);
    }
}
