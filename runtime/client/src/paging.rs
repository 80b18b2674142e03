//! Reading a whole paged collection: `{"value":[…], "nextLink":"<url>"}` pages are
//! fetched one after another until a page has no `nextLink`.
//!
//! Key items: [`Page`], [`parse_page`], [`collect_pages`].
//!
//! Contract: items come back in server order, across all pages; with a limit, no page
//! is requested once the limit is reached and the result is cut to it. A `nextLink`
//! that leads back to a page already read is an error, not an endless loop. The
//! fetching and the link resolution are passed in, so the loop is tested without a
//! server.

use crate::error::ClientError;
use reqwest::Url;
use serde_json::Value;
use std::collections::HashSet;
use std::future::Future;

/// One page of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    /// The next page, as the server wrote it; `None` on the last page.
    pub next_link: Option<String>,
}

/// Read a page body; `url` is only for the error message.
pub fn parse_page(body: Value, url: &Url) -> Result<Page, ClientError> {
    let bad = |what: &str| ClientError::BadResponse {
        url: url.to_string(),
        what: what.to_owned(),
    };
    let Value::Object(mut object) = body else {
        return Err(bad("expected a {\"value\": [...]} page object"));
    };
    let items = match object.remove("value") {
        Some(Value::Array(items)) => items,
        _ => return Err(bad("page has no \"value\" array")),
    };
    let next_link = match object.remove("nextLink") {
        None | Some(Value::Null) => None,
        Some(Value::String(link)) if link.is_empty() => None,
        Some(Value::String(link)) => Some(link),
        Some(_) => return Err(bad("\"nextLink\" is not a string")),
    };
    Ok(Page { items, next_link })
}

/// Fetch `first` and every page after it; `resolve` turns a `nextLink` into the URL
/// to fetch.
pub async fn collect_pages<F, Fut, R>(
    first: Url,
    limit: Option<usize>,
    mut fetch: F,
    resolve: R,
) -> Result<Vec<Value>, ClientError>
where
    F: FnMut(Url) -> Fut,
    Fut: Future<Output = Result<Page, ClientError>>,
    R: Fn(&str) -> Result<Url, ClientError>,
{
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(first);
    while let Some(url) = next.take() {
        if limit.is_some_and(|limit| items.len() >= limit) {
            break;
        }
        if !seen.insert(url.to_string()) {
            return Err(ClientError::BadResponse {
                url: url.to_string(),
                what: "nextLink leads back to a page already read".to_owned(),
            });
        }
        let page = fetch(url).await?;
        items.extend(page.items);
        next = page.next_link.as_deref().map(&resolve).transpose()?;
    }
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::RefCell;
    use std::collections::HashMap;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    /// A fake server: page URL → (items, nextLink); records the URLs fetched.
    struct FakePages {
        pages: HashMap<String, Page>,
        fetched: RefCell<Vec<String>>,
    }

    impl FakePages {
        fn new(pages: &[(&str, &[i64], Option<&str>)]) -> Self {
            let pages = pages
                .iter()
                .map(|(u, items, next)| {
                    let page = Page {
                        items: items.iter().map(|i| json!(i)).collect(),
                        next_link: next.map(str::to_owned),
                    };
                    (u.to_string(), page)
                })
                .collect();
            Self {
                pages,
                fetched: RefCell::new(Vec::new()),
            }
        }

        async fn collect(&self, limit: Option<usize>) -> Result<Vec<Value>, ClientError> {
            collect_pages(
                url("http://h/p1"),
                limit,
                |u: Url| async move {
                    self.fetched.borrow_mut().push(u.to_string());
                    self.pages
                        .get(u.as_str())
                        .cloned()
                        .ok_or_else(|| ClientError::Usage(format!("no such page {u}")))
                },
                |link: &str| Ok(url(link)),
            )
            .await
        }
    }

    #[tokio::test]
    async fn follows_next_links_until_the_last_page() {
        let fake = FakePages::new(&[
            ("http://h/p1", &[1, 2], Some("http://h/p2")),
            ("http://h/p2", &[], Some("http://h/p3")),
            ("http://h/p3", &[3], None),
        ]);
        let items = fake.collect(None).await.expect("items");
        assert_eq!(items, vec![json!(1), json!(2), json!(3)]);
        assert_eq!(fake.fetched.borrow().len(), 3);
    }

    #[tokio::test]
    async fn a_limit_stops_fetching_and_truncates() {
        let fake = FakePages::new(&[
            ("http://h/p1", &[1, 2], Some("http://h/p2")),
            ("http://h/p2", &[3, 4], Some("http://h/p3")),
            ("http://h/p3", &[5], None),
        ]);
        let items = fake.collect(Some(3)).await.expect("items");
        assert_eq!(items, vec![json!(1), json!(2), json!(3)]);
        assert_eq!(*fake.fetched.borrow(), vec!["http://h/p1", "http://h/p2"]);

        let items = FakePages::new(&[])
            .collect(Some(0))
            .await
            .expect("no fetch");
        assert!(items.is_empty());
    }

    #[tokio::test]
    async fn a_next_link_loop_is_an_error() {
        let fake = FakePages::new(&[
            ("http://h/p1", &[1], Some("http://h/p2")),
            ("http://h/p2", &[2], Some("http://h/p1")),
        ]);
        let err = fake.collect(None).await.expect_err("loop");
        assert!(err.to_string().contains("already read"), "{err}");
    }

    #[test]
    fn pages_parse_with_and_without_next_link() {
        let u = url("http://h/x");
        let page = parse_page(json!({"value": [1], "nextLink": "http://h/y"}), &u).expect("page");
        assert_eq!(page.next_link.as_deref(), Some("http://h/y"));
        let page = parse_page(json!({"value": [], "nextLink": null}), &u).expect("page");
        assert_eq!(page.next_link, None);
        let page = parse_page(json!({"value": []}), &u).expect("page");
        assert_eq!(page.next_link, None);
    }

    #[test]
    fn malformed_pages_are_bad_responses() {
        let u = url("http://h/x");
        for body in [
            json!([1]),
            json!({"items": []}),
            json!({"value": [], "nextLink": 3}),
        ] {
            let err = parse_page(body, &u).expect_err("malformed");
            assert_eq!(err.exit_code(), 1);
        }
    }
}
