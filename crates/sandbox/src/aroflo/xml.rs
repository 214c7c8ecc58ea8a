//! A small element tree for `postxml` bodies (tags lower-cased, text and CDATA joined).

use quick_xml::events::Event;
use quick_xml::Reader;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The trimmed text of a child, `None` when absent (present and empty is `Some("")`).
    pub fn text_of(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_owned())
    }

    /// `<outer><inner>text</inner></outer>`, e.g. `client/clientid`.
    pub fn nested_text(&self, outer: &str, inner: &str) -> Option<String> {
        self.child(outer)?.text_of(inner)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// XML 1.0's `Char` production; `char` already excludes surrogates.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Parses a document into its root element. Like a conforming parser (and AroFlo), it refuses a
/// character XML 1.0 forbids anywhere, even inside CDATA; quick-xml alone would let it through.
pub fn parse(xml: &str) -> Result<Element, String> {
    if let Some((at, c)) = xml.char_indices().find(|(_, c)| !xml_char(*c)) {
        return Err(format!(
            "malformed XML: character U+{:04X} at byte {at} is not allowed",
            c as u32
        ));
    }
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().map_err(|e| format!("malformed XML: {e}"))?;
        match event {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).to_ascii_lowercase();
                stack.push(Element {
                    name,
                    ..Element::default()
                });
            }
            Event::Empty(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).to_ascii_lowercase();
                let element = Element {
                    name,
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("malformed XML: unexpected end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(text) => {
                if let Some(current) = stack.last_mut() {
                    current
                        .text
                        .push_str(&text.decode().map_err(|e| format!("malformed XML: {e}"))?);
                }
            }
            Event::CData(data) => {
                if let Some(current) = stack.last_mut() {
                    current
                        .text
                        .push_str(&data.decode().map_err(|e| format!("malformed XML: {e}"))?);
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => entity(&String::from_utf8_lossy(&reference)),
                };
                let c = resolved.ok_or("malformed XML: unknown entity")?;
                if let Some(current) = stack.last_mut() {
                    current.text.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("malformed XML: unclosed element".into());
    }
    root.ok_or_else(|| "malformed XML: no root element".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdata_entities_and_nesting() {
        let root = parse(
            "<?xml version=\"1.0\"?><Tasks><task><taskid>T1</taskid><notes><note><content><![CDATA[a < b]]> &amp; c</content></note></notes><empty/></task></Tasks>",
        )
        .expect("xml");
        assert_eq!(root.name, "tasks");
        let task = root.child("task").expect("task");
        assert_eq!(task.text_of("taskid").as_deref(), Some("T1"));
        let note = task.child("notes").and_then(|n| n.child("note")).expect("note");
        assert_eq!(note.text_of("content").as_deref(), Some("a < b & c"));
        assert_eq!(task.text_of("empty").as_deref(), Some(""));
        assert!(parse("<a><b></a>").is_err());
        let refused = parse("<a><b><![CDATA[bell \u{7}]]></b></a>").expect_err("U+0007 refused");
        assert!(refused.contains("U+0007"), "{refused}");
        assert!(parse("<a><b>tab\tand\r\nline</b></a>").is_ok());
    }
}
