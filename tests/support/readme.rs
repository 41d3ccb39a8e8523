//! README examples kept the same as the module doctests rustdoc compiles
//! and runs.

/// The first Rust example after the README heading `heading`.
pub fn readme_example(heading: &str) -> String {
    let readme = include_str!("../../README.md");
    let section = readme
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("the README has the section {heading:?}"));
    section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a rust example")
        .to_owned()
}

/// The `n`th example (from 0) of a module's `//!` docs in `source`, as a
/// reader sees it: without the lines rustdoc hides.
pub fn module_example(source: &str, n: usize) -> String {
    let doc: Vec<&str> = source
        .lines()
        .take_while(|line| line.starts_with("//!"))
        .map(|line| {
            line.strip_prefix("//! ")
                .unwrap_or(line.trim_start_matches("//!"))
        })
        .collect();
    let fences: Vec<usize> = doc
        .iter()
        .enumerate()
        .filter(|(_, line)| line.starts_with("```"))
        .map(|(i, _)| i)
        .collect();
    let (start, end) = (fences[2 * n] + 1, fences[2 * n + 1]);
    doc[start..end]
        .iter()
        .filter(|line| !line.starts_with("# ") && **line != "#")
        .map(|line| format!("{line}\n"))
        .collect()
}
