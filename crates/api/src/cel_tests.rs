//! The CEL subset: evaluation and the refusals in words.
use super::*;

struct Req;
impl Attributes for Req {
    fn get(&self, attr: Attr) -> Option<Value> {
        match attr {
            Attr::ResponseCode => Some(Value::Int(503)),
            Attr::ResponseFlags => Some(Value::Int(0x80)),
            Attr::RequestPath => Some(Value::Str("/api/v1/items".into())),
            Attr::RequestMethod => Some(Value::Str("GET".into())),
            _ => None,
        }
    }
    fn header(&self, _: Attr, name: &str) -> Option<String> {
        (name == "x-tier").then(|| "gold".into())
    }
}

fn t(src: &str) -> bool {
    parse(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .matches(&Req)
}

#[test]
fn evaluates_the_subset() {
    assert!(t("response.code >= 400"));
    assert!(!t("response.code < 400"));
    assert!(t("response.code == 503 && request.method == 'GET'"));
    assert!(t("response.flags != 0"));
    assert!(t("request.headers['X-Tier'] == \"gold\""));
    assert!(t(
        "'x-tier' in request.headers && !('x-other' in request.headers)"
    ));
    assert!(t(
        "request.path.startsWith('/api/') && request.path.contains('items')"
    ));
    assert!(
        !t("request.headers['missing'] == 'a'"),
        "a missing header is an error: no log"
    );
    assert!(
        t("request.headers['missing'] == 'a' || response.code == 503"),
        "|| absorbs the error"
    );
    assert!(!t(
        "request.headers['missing'] == 'a' && response.code == 503"
    ));
    assert!(!t(
        "request.headers['missing'] == 'a' && response.code == 200"
    ));
    assert!(t("(response.code == 200 || response.code == 503) && true"));
    assert!(!t("response.code == '503'"), "different types are unequal");
}

#[test]
fn refuses_what_it_does_not_support_in_words() {
    for (src, why) in [
        ("response.cod >= 400", "unknown attribute `response.cod`"),
        ("response.code >= ", "ends where a value"),
        ("size(request.path) > 3", "unknown attribute `size`"),
        ("request.path.matches('a')", "method `matches`"),
        ("response.code + 1", "unexpected '+'"),
        ("'a' in request.path", "`in` is supported only"),
        ("response.code == 1 )", "after a complete expression"),
    ] {
        let e = parse(src).expect_err(src);
        assert!(e.0.contains(why), "{src}: {e}");
    }
}

#[test]
fn label_values_are_strings_numbers_and_bools_and_none_for_errors() {
    let v = |src: &str| {
        parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .label_value(&Req)
    };
    assert_eq!(v("request.method").as_deref(), Some("GET"));
    assert_eq!(v("request.headers['x-tier']").as_deref(), Some("gold"));
    assert_eq!(v("string(response.code)").as_deref(), Some("503"));
    assert_eq!(v("response.code").as_deref(), Some("503"));
    assert_eq!(v("response.code >= 500").as_deref(), Some("true"));
    assert_eq!(
        v("request.headers['absent']"),
        None,
        "a missing header is an error"
    );
    assert_eq!(v("null"), None);
    assert!(t("string(response.code) == '503'"));
}
