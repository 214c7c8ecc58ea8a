//! `postxml` bodies: the zone's plural root, one element per record, strings in CDATA.
//!
//! Every document is well-formed XML 1.0 whatever the strings hold: `]]>` is split across two
//! CDATA sections, and characters XML 1.0 forbids anywhere (C0 controls other than tab, line feed
//! and carriage return; U+FFFE, U+FFFF) become U+FFFD, so one stray control character in a GHL
//! field cannot make AroFlo refuse the whole post. A parser reads line ends as `\n`.

/// A small XML writer for AroFlo's flat record shapes.
#[derive(Default)]
pub struct Xml {
    out: String,
}

fn cdata(value: &str) -> String {
    let legal: String = value
        .chars()
        .map(|c| if xml_char(c) { c } else { char::REPLACEMENT_CHARACTER })
        .collect();
    // `]]>` cannot appear inside CDATA: split it across two sections.
    format!("<![CDATA[{}]]>", legal.replace("]]>", "]]]]><![CDATA[>"))
}

/// XML 1.0's `Char` production; `char` already excludes surrogates.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

impl Xml {
    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.out.push_str(&format!("<{tag}>"));
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.out.push_str(&format!("</{tag}>"));
        self
    }

    /// `<tag><![CDATA[value]]></tag>`
    pub fn text(&mut self, tag: &str, value: &str) -> &mut Self {
        self.out.push_str(&format!("<{tag}>{}</{tag}>", cdata(value)));
        self
    }

    /// `<outer><tag>value</tag></outer>`, e.g. `<client><clientid>…</clientid></client>`.
    pub fn nested(&mut self, outer: &str, tag: &str, value: &str) -> &mut Self {
        self.open(outer).text(tag, value).close(outer)
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_wrapped_and_strings_escaped() {
        let xml = Xml::default()
            .open("clients")
            .open("client")
            .text("clientname", "A & B <x> ]]> done")
            .close("client")
            .close("clients")
            .finish();
        assert_eq!(
            xml,
            "<clients><client><clientname><![CDATA[A & B <x> ]]]]><![CDATA[> done]]></clientname></client></clients>"
        );
    }

    /// What a conforming XML 1.0 parser reads back from a string the writer wrote: forbidden
    /// characters replaced, line ends normalised (XML §2.11).
    fn as_read_back(value: &str) -> String {
        let legal: String = value
            .chars()
            .map(|c| if xml_char(c) { c } else { '\u{FFFD}' })
            .collect();
        legal.replace("\r\n", "\n").replace('\r', "\n")
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Any text, weighted towards what breaks XML writers: markup, CDATA ends, controls.
        fn text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("]]>".to_owned()),
                Just("]]".to_owned()),
                Just("<![CDATA[".to_owned()),
                Just("&amp;".to_owned()),
                Just("\r\n".to_owned()),
                "[<>&'\"\\]\\[]{1,3}",
                "[\u{0}-\u{1f}\u{fffe}\u{ffff}]",
                "\\PC{0,6}",
                any::<char>().prop_map(String::from),
            ];
            prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// The document parses under a strict XML 1.0 parser (roxmltree, not the emulator's
            /// lenient reader) and every value comes back as written, in order.
            #[test]
            fn every_value_reads_back_from_a_well_formed_document(values in prop::collection::vec(text(), 1..5)) {
                let mut xml = Xml::default();
                xml.open("tasks").open("task");
                for (i, value) in values.iter().enumerate() {
                    xml.nested(&format!("field{i}"), "value", value);
                }
                let document = xml.close("task").close("tasks").finish();
                let parsed = roxmltree::Document::parse(&document)
                    .map_err(|e| TestCaseError::fail(format!("{e} in {document:?}")))?;
                let task = parsed.root_element().first_element_child().expect("task");
                let read: Vec<String> = task
                    .children()
                    .filter(|n| n.is_element())
                    .map(|field| {
                        let value = field.first_element_child().expect("value");
                        value.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect()
                    })
                    .collect();
                let expected: Vec<String> = values.iter().map(|v| as_read_back(v)).collect();
                prop_assert_eq!(read, expected);
            }
        }
    }
}
