//! A minimal XML-with-namespaces parser used only by the XEP-0227 tests, so they can run while
//! the real parser (`crate::xml::parser::parse_element`) is being written. It handles what the
//! tests produce: elements, attributes in either quote, namespace declarations, the five
//! predefined entities and character references, CDATA, comments and processing instructions.
//! The tests that go through the public API use the real parser.

use crate::xml::{Element, Node, XML_NS};

pub(crate) fn parse(text: &str) -> Result<Element, String> {
    let mut p = Parser { s: text, pos: 0 };
    p.skip_misc()?;
    let scope = vec![("xml".to_string(), XML_NS.to_string())];
    let el = p.element(&scope)?;
    p.skip_misc()?;
    if p.pos != p.s.len() {
        return Err(format!("content after the root element at byte {}", p.pos));
    }
    Ok(el)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    fn skip_past(&mut self, end: &str) -> Result<&'a str, String> {
        let r = self.rest();
        let i = r.find(end).ok_or_else(|| format!("missing {end:?}"))?;
        self.pos += i + end.len();
        Ok(&r[..i])
    }

    fn skip_misc(&mut self) -> Result<(), String> {
        loop {
            self.skip_ws();
            if self.rest().starts_with("<?") {
                self.skip_past("?>")?;
            } else if self.rest().starts_with("<!--") {
                self.skip_past("-->")?;
            } else {
                return Ok(());
            }
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            Ok(())
        } else {
            Err(format!("expected {c:?} at byte {}", self.pos))
        }
    }

    fn name(&mut self) -> Result<&'a str, String> {
        let r = self.rest();
        let end = r
            .find(|c: char| c.is_whitespace() || "/>=<".contains(c))
            .unwrap_or(r.len());
        if end == 0 {
            return Err(format!("expected a name at byte {}", self.pos));
        }
        self.pos += end;
        Ok(&r[..end])
    }

    fn element(&mut self, outer: &[(String, String)]) -> Result<Element, String> {
        self.expect('<')?;
        let qname = self.name()?;
        let mut raw_attrs = Vec::new();
        let empty = loop {
            self.skip_ws();
            if self.rest().starts_with("/>") {
                self.pos += 2;
                break true;
            }
            if self.rest().starts_with('>') {
                self.pos += 1;
                break false;
            }
            let name = self.name()?;
            self.skip_ws();
            self.expect('=')?;
            self.skip_ws();
            let quote = self
                .rest()
                .chars()
                .next()
                .filter(|c| *c == '\'' || *c == '"')
                .ok_or("expected a quote")?;
            self.pos += 1;
            let raw = self.skip_past(if quote == '\'' { "'" } else { "\"" })?;
            raw_attrs.push((name, unescape(raw)?));
        };

        let mut scope = outer.to_vec();
        let mut attrs = Vec::new();
        for (k, v) in raw_attrs {
            if k == "xmlns" {
                scope.push((String::new(), v));
            } else if let Some(prefix) = k.strip_prefix("xmlns:") {
                scope.push((prefix.to_string(), v));
            } else {
                attrs.push((k.to_string(), v));
            }
        }
        let (prefix, local) = qname.split_once(':').unwrap_or(("", qname));
        let ns = match scope.iter().rev().find(|(p, _)| p == prefix) {
            Some((_, uri)) => uri.clone(),
            None if prefix.is_empty() => String::new(),
            None => return Err(format!("unbound prefix {prefix:?}")),
        };
        let mut el = Element {
            name: local.to_string(),
            ns,
            attrs,
            children: Vec::new(),
        };
        if empty {
            return Ok(el);
        }
        loop {
            let r = self.rest();
            if r.starts_with("</") {
                self.pos += 2;
                let end = self.name()?;
                if end != qname {
                    return Err(format!("</{end}> closes <{qname}>"));
                }
                self.skip_ws();
                self.expect('>')?;
                return Ok(el);
            } else if r.starts_with("<!--") {
                self.skip_past("-->")?;
            } else if r.starts_with("<![CDATA[") {
                self.pos += "<![CDATA[".len();
                let text = self.skip_past("]]>")?;
                push_text(&mut el, text.to_string());
            } else if r.starts_with('<') {
                let child = self.element(&scope)?;
                el.children.push(Node::Element(child));
            } else if r.is_empty() {
                return Err(format!("<{qname}> is not closed"));
            } else {
                let end = r.find('<').unwrap_or(r.len());
                self.pos += end;
                push_text(&mut el, unescape(&r[..end])?);
            }
        }
    }
}

fn push_text(el: &mut Element, text: String) {
    if let Some(Node::Text(t)) = el.children.last_mut() {
        t.push_str(&text);
    } else {
        el.children.push(Node::Text(text));
    }
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or("unterminated entity")?;
        let entity = &after[..end];
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16)
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse()
                } else {
                    return Err(format!("unknown entity &{entity};"));
                }
                .map_err(|_| format!("bad character reference &{entity};"))?;
                char::from_u32(code).ok_or("bad character reference")?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[test]
fn parses_what_the_writer_writes() {
    let el = Element::new("message", "jabber:client")
        .with_attr("to", "a@b")
        .with_attr("v", "x'\"<&\n")
        .with_child(Element::new("body", "jabber:client").with_text("1 < 2 & 'x' ✓"))
        .with_child(Element::new("x", "urn:x").with_child(Element::new("y", "")));
    assert_eq!(parse(&el.to_string()).unwrap(), el);
    let doc = "<?xml version='1.0'?>\n<!-- c --><a:r xmlns:a='u' xmlns='d'><b c=\"1\"><![CDATA[<x>]]>&#x41;&#66;</b></a:r>\n";
    let r = parse(doc).unwrap();
    assert!(r.is("r", "u"));
    let b = r.child("b", "d").unwrap();
    assert_eq!(b.text(), "<x>AB");
    assert_eq!(b.attr("c"), Some("1"));
    assert!(parse("<a><b></a>").is_err());
}
