//! Plugs picked by name in a TOML table: `[model.backbone] name = "face_resnet"` or
//! `[loss] name = "center"`, with the fields of that plug's settings beside the name.
//!
//! A [`Registry`] maps each name to the settings type it parses; the built-in backbones and
//! losses are registered in it the same way a user's crate adds its own
//! (`facerec_model::register_backbone`, `facerec_losses::register_loss`), so a plug from another
//! crate trains, saves and loads like a built-in one. A [`Choice`] is the parsed table: the
//! name, the settings as written (with every default filled in) and the settings object behind
//! a trait (`dyn BackboneSpec`, `dyn LossSpec`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A settings type that a TOML table picks by its `name`.
pub trait Plug: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static {
    /// The `name = "..."` that picks it.
    const NAME: &'static str;
    /// Range checks after parsing; the message names the key (e.g. `loss.lambda must be >= 0`).
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Parses a table (without its `name`) into the settings object and its canonical table.
type Parse<S> = Arc<dyn Fn(toml::Table) -> Result<(Arc<S>, toml::Table), String> + Send + Sync>;

/// The plugs of one kind (backbones, losses) by name.
pub struct Registry<S: ?Sized + 'static> {
    /// What the plugs are, for messages: `"backbone"`, `"loss"`.
    what: &'static str,
    /// The name a table without `name` gets (`None`: the name is required).
    default: Option<&'static str>,
    parsers: RwLock<BTreeMap<&'static str, Parse<S>>>,
}

impl<S: ?Sized + 'static> Registry<S> {
    pub const fn new(what: &'static str, default: Option<&'static str>) -> Self {
        Registry { what, default, parsers: RwLock::new(BTreeMap::new()) }
    }

    /// Adds (or replaces) the plug `P`, named `P::NAME`, given how to put a `P` behind the
    /// registry's trait (`|p| Arc::new(p) as Arc<dyn BackboneSpec>`).
    pub fn add<P: Plug>(&self, erase: fn(P) -> Arc<S>) {
        let parse: Parse<S> = Arc::new(move |table| parse_plug(table, erase));
        self.parsers.write().unwrap_or_else(|e| e.into_inner()).insert(P::NAME, parse);
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.parsers.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }

    /// Parses a plug's table (`name` and settings).
    pub fn parse(&self, mut table: toml::Table) -> Result<Choice<S>, String> {
        let name = match table.remove("name") {
            Some(toml::Value::String(name)) => name,
            Some(other) => return Err(format!("{} name must be a string, got {other}", self.what)),
            None => match self.default {
                Some(name) => name.to_owned(),
                None => return Err(format!("missing field `name` (the {}: one of {})", self.what, self.listed())),
            },
        };
        let parse = self.parsers.read().unwrap_or_else(|e| e.into_inner()).get(name.as_str()).cloned();
        let parse = parse.ok_or_else(|| format!("unknown {} `{name}`, expected one of {}", self.what, self.listed()))?;
        let (spec, settings) = parse(table)?;
        Ok(Choice { name, settings, spec })
    }

    fn listed(&self) -> String {
        self.names().iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    }
}

/// Parses a table into `P` and checks it: the [`Parse`] of a plug, given how to put a `P`
/// behind the registry's trait.
fn parse_plug<P: Plug, S: ?Sized>(table: toml::Table, erase: fn(P) -> Arc<S>) -> Result<(Arc<S>, toml::Table), String> {
    let plug: P = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
        // toml puts the key after the message ("...\nin `lambda`"): put it first.
        let (text, message) = (e.to_string(), e.message().to_owned());
        let key = text.strip_prefix(&message).and_then(|r| r.trim().strip_prefix("in `")?.strip_suffix('`').map(str::to_owned));
        key.map_or(message.clone(), |k| format!("{k}: {message}"))
    })?;
    plug.check()?;
    let settings = settings_of(&plug)?;
    Ok((erase(plug), settings))
}

/// The table of `plug`'s settings (every field, defaults included).
pub fn settings_of<P: Plug>(plug: &P) -> Result<toml::Table, String> {
    toml::Table::try_from(plug).map_err(|e| format!("{}: cannot write its settings: {e}", P::NAME))
}

/// The kinds of plug with a registry of their own.
pub trait Registered: 'static {
    fn registry() -> &'static Registry<Self>;
}

/// A plug as configured: its name, its settings, and the settings object.
pub struct Choice<S: ?Sized> {
    name: String,
    settings: toml::Table,
    spec: Arc<S>,
}

impl<S: ?Sized> Choice<S> {
    /// A choice of the plug `P` with `plug`'s settings.
    pub fn of<P: Plug>(plug: P, erase: fn(P) -> Arc<S>) -> Self {
        let settings = settings_of(&plug).unwrap_or_default();
        Choice { name: P::NAME.to_owned(), settings, spec: erase(plug) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings object.
    pub fn spec(&self) -> &S {
        &self.spec
    }

    /// The settings as a table (without `name`).
    pub fn settings(&self) -> &toml::Table {
        &self.settings
    }
}

impl<S: ?Sized> Clone for Choice<S> {
    fn clone(&self) -> Self {
        Choice { name: self.name.clone(), settings: self.settings.clone(), spec: self.spec.clone() }
    }
}

impl<S: ?Sized> PartialEq for Choice<S> {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.settings == other.settings
    }
}

impl<S: ?Sized> fmt::Debug for Choice<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, toml::Value::Table(self.settings.clone()))
    }
}

/// `center (alpha 0.5, lambda 0.003)`: the name and the settings, for logs.
impl<S: ?Sized> fmt::Display for Choice<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings: Vec<String> = self.settings.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if settings.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{} ({})", self.name, settings.join(", "))
        }
    }
}

impl<S: ?Sized> Serialize for Choice<S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        let mut map = serializer.serialize_map(Some(self.settings.len() + 1))?;
        map.serialize_entry("name", &self.name)?;
        for (k, v) in &self.settings {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, S: ?Sized + Registered> Deserialize<'de> for Choice<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        S::registry().parse(table).map_err(D::Error::custom)
    }
}
