//! What the sessions and nodes tables share: filter chips, the search box, sortable
//! headers, and moving through the rows with the keyboard.
//!
//! The tables are `egui_extras` tables: a sticky header and a body that lays out only the
//! rows in view, so their cost per frame does not grow with the number of rows. What is
//! shown (filtered, then sorted) is computed again only when the data or the filter
//! changes, never per frame.

use egui::{Id, Key, Modifiers, RichText, TextEdit, Ui};

use crate::widgets::MUTED;

/// The height of a table row: compact, one line of body text.
pub const ROW_HEIGHT: f32 = 20.0;
/// The height of a table's header.
pub const HEADER_HEIGHT: f32 = 22.0;

/// What a filter chip selects on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    State,
    User,
    Application,
    Node,
    Label,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::User => "user",
            Self::Application => "application",
            Self::Node => "node",
            Self::Label => "label",
        }
    }
}

/// One filter: rows whose `field` is `value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chip {
    pub field: Field,
    pub value: String,
}

/// The chips and the search text of one table. Chips of one field are alternatives (state
/// running or starting); chips of different fields must all hold (user alice and node
/// n7); the search must be in the row's text, ignoring case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    pub chips: Vec<Chip>,
    pub search: String,
}

impl Filter {
    pub fn has(&self, field: Field, value: &str) -> bool {
        self.chips
            .iter()
            .any(|c| c.field == field && c.value == value)
    }

    /// Adds a chip, unless it is there already.
    pub fn add(&mut self, field: Field, value: &str) {
        if !self.has(field, value) {
            self.chips.push(Chip {
                field,
                value: value.to_string(),
            });
        }
    }

    pub fn toggle(&mut self, field: Field, value: &str) {
        if self.has(field, value) {
            self.chips
                .retain(|c| !(c.field == field && c.value == value));
        } else {
            self.add(field, value);
        }
    }

    /// Whether a row passes: `has(field, value)` says whether the row has that value in
    /// that field; `text` is what the search looks in, already in lower case.
    pub fn admits(&self, has: impl Fn(Field, &str) -> bool, text: impl FnOnce() -> String) -> bool {
        let mut fields: Vec<Field> = self.chips.iter().map(|c| c.field).collect();
        fields.sort();
        fields.dedup();
        let chips_hold = fields.into_iter().all(|field| {
            self.chips
                .iter()
                .filter(|c| c.field == field)
                .any(|c| has(field, &c.value))
        });
        if !chips_hold {
            return false;
        }
        let needle = self.search.trim();
        needle.is_empty() || text().contains(&needle.to_lowercase())
    }
}

/// Which column a table is sorted by, and which way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sort<C> {
    pub column: C,
    pub descending: bool,
}

/// A header cell: the column's title as a button that sorts by it (again: the other way).
/// Its accessible name is "Sort TABLE by TITLE".
pub fn sort_header<C: Copy + PartialEq>(
    ui: &mut Ui,
    sort: &mut Sort<C>,
    column: C,
    title: &str,
    table: &str,
) {
    let active = sort.column == column;
    let response = ui
        .add(egui::Button::new(RichText::new(title).strong()).frame(false))
        .accessible_name(format!("Sort {table} by {}", title.to_lowercase()))
        .on_hover_text("Sort by this column; again to reverse");
    if active {
        // A small triangle, up for ascending: the default fonts have no arrow glyphs.
        let (rect, _) = ui.allocate_exact_size(egui::vec2(8.0, 8.0), egui::Sense::hover());
        let c = rect.center();
        let (tip, base) = if sort.descending {
            (3.0, -3.0)
        } else {
            (-3.0, 3.0)
        };
        ui.painter().add(egui::Shape::convex_polygon(
            vec![
                egui::pos2(c.x, c.y + tip),
                egui::pos2(c.x - 4.0, c.y + base),
                egui::pos2(c.x + 4.0, c.y + base),
            ],
            ui.visuals().strong_text_color(),
            egui::Stroke::NONE,
        ));
    }
    if response.clicked() {
        if sort.column == column {
            sort.descending = !sort.descending;
        } else {
            *sort = Sort {
                column,
                descending: false,
            };
        }
    }
}

/// A striped, compact table of these columns (widths: initial, least; clipped
/// when `true`) whose body scrolls within `height` under its sticky header, scrolled to
/// `scroll_to` when given.
pub fn builder<'u>(
    ui: &'u mut Ui,
    id: &str,
    height: f32,
    scroll_to: Option<usize>,
    columns: &[(f32, f32, bool)],
    remainder: usize,
) -> egui_extras::TableBuilder<'u> {
    let mut builder = egui_extras::TableBuilder::new(ui)
        .id_salt(id)
        .striped(true)
        // Resizable columns draw their handles down to the bottom of the page, across
        // the details pane below the table.
        .resizable(false)
        .max_scroll_height(height)
        .auto_shrink([false, true])
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center));
    for (i, &(initial, least, clip)) in columns.iter().enumerate() {
        let column = if i == remainder {
            egui_extras::Column::remainder()
        } else {
            egui_extras::Column::initial(initial)
        };
        builder = builder.column(column.at_least(least).clip(clip));
    }
    if let Some(row) = scroll_to {
        builder = builder.scroll_to_row(row, None);
    }
    builder
}

/// A header row of sortable columns.
pub fn sort_headers<C: Copy + PartialEq>(
    header: &mut egui_extras::TableRow<'_, '_>,
    sort: &mut Sort<C>,
    columns: &[(C, &str)],
    table: &str,
) {
    for &(column, title) in columns {
        header.col(|ui| sort_header(ui, sort, column, title, table));
    }
}

/// The search box's id on a page, for Ctrl+F.
pub fn search_id(page: &str) -> Id {
    Id::unique(("sesco-search", page))
}

/// A search box named "Search" with a fixed id (see [`search_id`]).
pub fn search_box(ui: &mut Ui, page: &str, text: &mut String, hint: &str) {
    let label = ui.label("Search");
    ui.add(
        TextEdit::singleline(text)
            .id(search_id(page))
            .hint_text(hint)
            .desired_width(220.0),
    )
    .labelled_by(label.id)
    .on_hover_text("Ctrl+F");
}

/// The active chips, each with a button that removes it, and "Clear filters".
pub fn active_chips(ui: &mut Ui, filter: &mut Filter) {
    if filter.chips.is_empty() {
        return;
    }
    let mut remove = None;
    for (i, chip) in filter.chips.iter().enumerate() {
        let text = format!("{}: {}  ×", chip.field.name(), chip.value);
        if ui
            .add(egui::Button::new(text).selected(true).corner_radius(10.0))
            .on_hover_text("Remove this filter")
            .clicked()
        {
            remove = Some(i);
        }
    }
    if let Some(i) = remove {
        filter.chips.remove(i);
    }
    if ui.small_button("Clear filters").clicked() {
        filter.chips.clear();
    }
}

/// Chips that toggle one field's values on and off, e.g. every session state.
pub fn toggle_chips<'v>(
    ui: &mut Ui,
    filter: &mut Filter,
    field: Field,
    values: impl IntoIterator<Item = (&'v str, usize)>,
) {
    for (value, count) in values {
        let on = filter.has(field, value);
        let text = RichText::new(format!("{value} {count}"));
        if ui
            .add(egui::Button::new(text).selected(on).corner_radius(10.0))
            .accessible_name(format!("Filter {} {value}", field.name()))
            .on_hover_text(format!("Only rows whose {} is {value}", field.name()))
            .clicked()
        {
            filter.toggle(field, value);
        }
    }
}

/// "12 of 50,000 shown".
pub fn shown_count(ui: &mut Ui, shown: usize, total: usize, what: &str) {
    ui.label(
        RichText::new(format!(
            "{} of {} {what} shown",
            thousands(shown),
            thousands(total)
        ))
        .color(MUTED),
    );
}

/// `50000` → `50,000`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Moves a table's selection with Home, End, PageUp and PageDown (and the arrow keys),
/// unless a text field has the keyboard: the new row, or `None` when no key was pressed.
/// `page` is how many rows one page holds.
pub fn navigate(ui: &Ui, current: Option<usize>, len: usize, page: usize) -> Option<usize> {
    if len == 0 || ui.ctx().text_edit_focused() {
        return None;
    }
    let last = len - 1;
    let page = page.max(1);
    ui.input_mut(|i| {
        let mut pressed = |key| i.consume_key(Modifiers::NONE, key);
        if pressed(Key::Home) {
            Some(0)
        } else if pressed(Key::End) {
            Some(last)
        } else if pressed(Key::PageDown) {
            Some(current.map_or(0, |c| (c + page).min(last)))
        } else if pressed(Key::PageUp) {
            Some(current.map_or(0, |c| c.saturating_sub(page)))
        } else if pressed(Key::ArrowDown) {
            Some(current.map_or(0, |c| (c + 1).min(last)))
        } else if pressed(Key::ArrowUp) {
            Some(current.map_or(0, |c| c.saturating_sub(1)))
        } else {
            None
        }
    })
}

/// How many rows fit in `height`.
pub fn rows_in(height: f32) -> usize {
    ((height - HEADER_HEIGHT) / (ROW_HEIGHT + 1.0))
        .floor()
        .max(1.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chips_of_one_field_are_alternatives_and_fields_all_hold() {
        let mut filter = Filter::default();
        filter.add(Field::State, "running");
        filter.add(Field::State, "starting");
        filter.add(Field::User, "alice");
        filter.add(Field::User, "alice");
        assert_eq!(filter.chips.len(), 3, "a chip is not added twice");
        let row = |state: &'static str, user: &'static str| {
            move |field: Field, value: &str| match field {
                Field::State => value == state,
                Field::User => value == user,
                _ => false,
            }
        };
        assert!(filter.admits(row("running", "alice"), String::new));
        assert!(filter.admits(row("starting", "alice"), String::new));
        assert!(!filter.admits(row("failed", "alice"), String::new));
        assert!(!filter.admits(row("running", "bob"), String::new));
        filter.search = "  Encoder ".into();
        assert!(filter.admits(row("running", "alice"), || "encoder/h264".into()));
        assert!(!filter.admits(row("running", "alice"), || "telemetry".into()));
        filter.toggle(Field::User, "alice");
        assert!(filter.admits(row("running", "bob"), || "encoder".into()));
    }

    #[test]
    fn counts_read_with_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(5_000), "5,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
