//! Turns a `FileDescriptorSet` into a sorted, line-per-fact listing: package,
//! options, every message, field (name, number, type, label, type name,
//! jstype, JSON name), enum value and RPC. Two descriptors describe the same
//! wire contract when their listings are equal.

use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

/// The listing of the first file of `fds`, one fact per line, sorted.
pub fn listing(fds: &FileDescriptorSet) -> Vec<String> {
    let Some(file) = fds.file.first() else {
        return vec!["<no file>".to_owned()];
    };
    let mut out = vec![
        format!("file {} syntax {}", file.name(), file.syntax()),
        format!("package {}", file.package()),
        format!(
            "option java_package {}",
            file.options
                .as_ref()
                .map(|o| o.java_package().to_owned())
                .unwrap_or_default()
        ),
    ];
    let pkg = format!(".{}", file.package());
    for m in &file.message_type {
        message(&pkg, m, &mut out);
    }
    for e in &file.enum_type {
        enumeration(&pkg, e, &mut out);
    }
    for s in &file.service {
        out.push(format!(
            "service {pkg}.{} methods {}",
            s.name(),
            s.method.len()
        ));
        for m in &s.method {
            out.push(format!(
                "rpc {pkg}.{}.{}({}{}) returns ({}{})",
                s.name(),
                m.name(),
                if m.client_streaming() { "stream " } else { "" },
                m.input_type(),
                if m.server_streaming() { "stream " } else { "" },
                m.output_type(),
            ));
        }
    }
    out.sort();
    out
}

fn message(prefix: &str, m: &DescriptorProto, out: &mut Vec<String>) {
    let name = format!("{prefix}.{}", m.name());
    let map_entry = m.options.as_ref().is_some_and(|o| o.map_entry());
    out.push(format!(
        "message {name} fields {}{}",
        m.field.len(),
        if map_entry { " map_entry" } else { "" }
    ));
    for f in &m.field {
        let jstype = f
            .options
            .as_ref()
            .map(|o| format!(" jstype {}", o.jstype().as_str_name()))
            .unwrap_or_default();
        out.push(format!(
            "field {name}.{} = {} {} {} {} json {}{}{}",
            f.name(),
            f.number(),
            f.r#type().as_str_name(),
            f.label().as_str_name(),
            if f.type_name().is_empty() {
                "-"
            } else {
                f.type_name()
            },
            f.json_name(),
            jstype,
            if f.oneof_index.is_some() {
                " oneof"
            } else {
                ""
            },
        ));
    }
    for e in &m.enum_type {
        enumeration(&name, e, out);
    }
    for n in &m.nested_type {
        message(&name, n, out);
    }
}

fn enumeration(prefix: &str, e: &EnumDescriptorProto, out: &mut Vec<String>) {
    let name = format!("{prefix}.{}", e.name());
    out.push(format!("enum {name} values {}", e.value.len()));
    for v in &e.value {
        out.push(format!("value {name}.{} = {}", v.name(), v.number()));
    }
}
