//! `postxml` bodies: the zone's plural root, one element per record, strings in CDATA.

/// A small XML writer for AroFlo's flat record shapes.
#[derive(Default)]
pub struct Xml {
    out: String,
}

fn cdata(value: &str) -> String {
    // `]]>` cannot appear inside CDATA: split it across two sections.
    format!("<![CDATA[{}]]>", value.replace("]]>", "]]]]><![CDATA[>"))
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
}
