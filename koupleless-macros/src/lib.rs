//! Procedural macros for koupleless modules. Use them through the `koupleless-module` crate
//! (`#[koupleless_module::module(...)]`), or through `koupleless` in a base that compiles its
//! modules in (`#[koupleless::module(...)]`).

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::{
    Error, ImplItem, ItemImpl, LitStr, Token, parse::Parser, parse_macro_input,
    punctuated::Punctuated,
};

/// Declares a module's manifest on its `impl Module for T` block, once, for a native build
/// and a wasm build alike.
///
/// ```text
/// #[koupleless::module(name = "attendance", prefix = "/attendance")]
/// #[koupleless::async_trait]
/// impl Module for Attendance {
///     fn router(&self, ctx: &ModuleContext) -> Router { ... }
/// }
/// ```
///
/// * `name`: the module's name (`[a-z0-9][a-z0-9_-]*`); defaults to the package name.
/// * `version`: semver; defaults to the package version (`CARGO_PKG_VERSION`).
/// * `prefix`: where its routes are mounted; defaults to `/<name>`.
///
/// The attribute writes `fn manifest()`. Built for a `wasm32` target it also exports the
/// module as a koupleless component: the manifest in the `koupleless-manifest` custom section,
/// `koupleless:module/lifecycle` and `koupleless:module/handler`. The type must then
/// implement `Default`: the component creates the module with it.
#[proc_macro_attribute]
pub fn module(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = match Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated.parse(args) {
        Ok(args) => args,
        Err(e) => return e.to_compile_error().into(),
    };
    let mut item = parse_macro_input!(item as ItemImpl);
    match expand(args, &mut item) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Declared {
    name: String,
    version: String,
    prefix: String,
}

fn expand(
    args: Punctuated<syn::MetaNameValue, Token![,]>,
    item: &mut ItemImpl,
) -> Result<proc_macro2::TokenStream, Error> {
    let declared = declared(args)?;
    let krate = api_crate()?;
    if let Some(existing) = item.items.iter().find_map(|i| match i {
        ImplItem::Fn(f) if f.sig.ident == "manifest" => Some(f),
        _ => None,
    }) {
        return Err(Error::new_spanned(
            &existing.sig,
            "#[koupleless::module] writes `fn manifest()` from its arguments; remove this one",
        ));
    }
    let Declared {
        name,
        version,
        prefix,
    } = &declared;
    item.items.push(syn::parse_quote! {
        fn manifest(&self) -> #krate::Manifest {
            #krate::Manifest::new(
                #name,
                #krate::Version::parse(#version).expect("checked by #[koupleless::module]"),
                #prefix,
            )
        }
    });
    let self_ty = &item.self_ty;
    let manifest = format!(
        "{{\"name\":{},\"version\":{},\"prefix\":{}}}",
        json_string(name),
        json_string(version),
        json_string(prefix)
    );
    Ok(quote! {
        #item

        #[cfg(target_family = "wasm")]
        #krate::__wasm_export!(#self_ty, #manifest);
    })
}

/// The path of the crate the generated code names: `koupleless-module` when the calling crate
/// depends on it (under whatever name), else `koupleless`.
fn api_crate() -> Result<proc_macro2::TokenStream, Error> {
    use proc_macro_crate::{FoundCrate, crate_name};
    for (package, own_name) in [
        ("koupleless-module", "koupleless_module"),
        ("koupleless", "koupleless"),
    ] {
        let name = match crate_name(package) {
            // The crate itself (its doctests and tests) names itself by its own name.
            Ok(FoundCrate::Itself) => own_name.to_owned(),
            Ok(FoundCrate::Name(name)) => name,
            Err(_) => continue,
        };
        let ident = syn::Ident::new(&name, Span::call_site());
        return Ok(quote!(::#ident));
    }
    Err(Error::new(
        Span::call_site(),
        "#[koupleless::module] needs the `koupleless-module` crate (or `koupleless`, for a base) in [dependencies]",
    ))
}

fn declared(args: Punctuated<syn::MetaNameValue, Token![,]>) -> Result<Declared, Error> {
    let (mut name, mut version, mut prefix) = (None, None, None);
    for arg in args {
        let key = arg
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let slot = match key.as_str() {
            "name" => &mut name,
            "version" => &mut version,
            "prefix" => &mut prefix,
            _ => {
                return Err(Error::new_spanned(
                    &arg.path,
                    "unknown argument; expected `name`, `version` or `prefix`",
                ));
            }
        };
        let syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(text),
            ..
        }) = &arg.value
        else {
            return Err(Error::new_spanned(
                &arg.value,
                format!("`{key}` takes a string literal"),
            ));
        };
        *slot = Some(text.clone());
    }
    let package = |var: &str| std::env::var(var).unwrap_or_default();
    let name = name.unwrap_or_else(|| LitStr::new(&package("CARGO_PKG_NAME"), Span::call_site()));
    let version =
        version.unwrap_or_else(|| LitStr::new(&package("CARGO_PKG_VERSION"), Span::call_site()));
    let name_text = name.value();
    let valid_name = name_text.len() <= 63
        && name_text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name_text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid_name {
        return Err(Error::new(
            name.span(),
            format!(
                "module name `{name_text}` must match [a-z0-9][a-z0-9_-]* (at most 63 characters); set `name = \"...\"`"
            ),
        ));
    }
    if let Err(e) = semver::Version::parse(&version.value()) {
        return Err(Error::new(
            version.span(),
            format!(
                "version `{}` is not semver ({e}); write it like `1.2.3`",
                version.value()
            ),
        ));
    }
    let prefix = prefix
        .map(|p| p.value())
        .unwrap_or_else(|| format!("/{name_text}"));
    if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
        return Err(Error::new(
            Span::call_site(),
            format!("prefix `{prefix}` must start with `/`, name a path, and not end with `/`"),
        ));
    }
    Ok(Declared {
        name: name_text,
        version: version.value(),
        prefix,
    })
}

/// A JSON string literal for `text` (names, semver and prefixes need only `"` and `\` escaped).
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The schema migrations in a directory of the calling crate (`migrations` by default),
/// embedded at compile time, for [`Module::migrations`]:
///
/// ```ignore
/// fn migrations(&self) -> Vec<koupleless_module::sql::Migration> {
///     koupleless_module::migrations!()
/// }
/// ```
///
/// Each file is `<number>_<name>.sql` (`1_create_entry.sql`, `2_add_currency.sql`); another
/// `.sql` name is a compile error. Other files are left out.
#[proc_macro]
pub fn migrations(input: TokenStream) -> TokenStream {
    let dir = if input.is_empty() {
        "migrations".to_owned()
    } else {
        match syn::parse::<LitStr>(input) {
            Ok(dir) => dir.value(),
            Err(e) => return e.to_compile_error().into(),
        }
    };
    match embed_migrations(&dir) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn embed_migrations(dir: &str) -> Result<proc_macro2::TokenStream, Error> {
    let krate = api_crate()?;
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let path = root.join(dir);
    let entries = std::fs::read_dir(&path).map_err(|e| {
        Error::new(
            Span::call_site(),
            format!(
                "cannot read the migrations directory `{}`: {e}",
                path.display()
            ),
        )
    })?;
    let mut files: Vec<(i64, String, String)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".sql") else {
            continue;
        };
        let number = stem.split_once('_').map_or(stem, |(n, _)| n);
        let Ok(number) = number.parse::<i64>() else {
            return Err(Error::new(
                Span::call_site(),
                format!(
                    "migration `{name}` does not start with its number: name it `<number>_<name>.sql`"
                ),
            ));
        };
        let full = entry.path().to_string_lossy().into_owned();
        files.push((number, name, full));
    }
    files.sort();
    let items = files.iter().map(|(_, name, full)| {
        quote! {
            #krate::sql::Migration::from_file(#name, include_str!(#full))
                .expect("a migration file name with its number")
        }
    });
    // Built for wasm, the migrations also travel in a custom section of the component, which
    // the base reads when it loads the artifact and applies before the version starts.
    let mut json = String::from("[");
    for (i, (number, name, full)) in files.iter().enumerate() {
        let sql = std::fs::read_to_string(full).map_err(|e| {
            Error::new(
                Span::call_site(),
                format!("cannot read migration `{name}`: {e}"),
            )
        })?;
        let stem = name.strip_suffix(".sql").unwrap_or(name);
        let label = stem.split_once('_').map_or("", |(_, l)| l);
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            "{{\"version\":{number},\"name\":{},\"sql\":{}}}",
            json_string(label),
            json_string(&sql)
        ));
    }
    json.push(']');
    let section = proc_macro2::Literal::byte_string(json.as_bytes());
    let len = json.len();
    Ok(quote! {{
        #[cfg(target_family = "wasm")]
        {
            #[used]
            #[unsafe(link_section = "koupleless-migrations")]
            static EMBEDDED_MIGRATIONS: [u8; #len] = *#section;
        }
        ::std::vec![#(#items),*]
    }})
}
