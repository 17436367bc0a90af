//! `#[derive(Module)]` for retrograd models, re-exported as `retrograd::nn::Module` (the
//! derive and the trait share the name, as serde's do). The derive's documentation, with
//! examples, is on the re-export in `retrograd-nn`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, GenericParam, Ident, Path, Type, parse_macro_input};

/// Implements `Module` for a struct whose fields are its sub-modules and parameters; see
/// `retrograd_nn::Module` for the rules and an example.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// What a field is to the model.
enum Role {
    /// A sub-module: its parameters are listed under the field's name.
    Module,
    /// A `Param`: one parameter named by the field.
    Param,
}

/// One field the derive registers.
struct Member {
    ident: Ident,
    ty: Type,
    role: Role,
}

/// The struct-level options: `#[module(scalar = f32, crate = path)]`.
struct Options {
    scalar: Option<Type>,
    krate: Path,
}

fn parse_options(input: &DeriveInput) -> syn::Result<Options> {
    let mut options = Options {
        scalar: None,
        krate: syn::parse_quote!(::retrograd::nn),
    };
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("scalar") {
                options.scalar = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("crate") {
                options.krate = meta.value()?.parse()?;
                Ok(())
            } else {
                Err(meta.error("expected `scalar = TYPE` or `crate = PATH`"))
            }
        })?;
    }
    Ok(options)
}

/// Whether a field carries `#[module(skip)]`.
fn is_skipped(field: &syn::Field) -> syn::Result<bool> {
    let mut skip = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                Err(meta.error("expected `skip` (a field that is configuration, not a module)"))
            }
        })?;
    }
    Ok(skip)
}

/// Whether `ty` names the `Param` type (by its last path segment).
fn is_param(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none()
        && p.path.segments.last().is_some_and(|s| s.ident == "Param" && s.arguments.is_none()))
}

fn members(input: &DeriveInput) -> syn::Result<Vec<Member>> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[derive(Module)] needs a struct whose named fields are its sub-modules and parameters",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(
            data.fields.span(),
            "#[derive(Module)] needs named fields: their names become the parameters' names",
        ));
    };
    let mut out = Vec::new();
    for field in &fields.named {
        if is_skipped(field)? {
            continue;
        }
        let ident = field.ident.clone().expect("named fields have names");
        let role = if is_param(&field.ty) {
            Role::Param
        } else {
            Role::Module
        };
        out.push(Member {
            ident,
            ty: field.ty.clone(),
            role,
        });
    }
    Ok(out)
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let options = parse_options(input)?;
    let members = members(input)?;
    let krate = &options.krate;
    let name = &input.ident;
    let vis = &input.vis;
    let params_name = format_ident!("{name}Params");

    // The scalar: given, else the struct's first type parameter, else every `Scalar`.
    let first_type_param = input.generics.params.iter().find_map(|g| match g {
        GenericParam::Type(t) => Some(t.ident.clone()),
        _ => None,
    });
    let mut generics = input.generics.clone();
    let scalar: Type = match (&options.scalar, &first_type_param) {
        (Some(ty), _) => ty.clone(),
        (None, Some(t)) => syn::parse_quote!(#t),
        (None, None) => {
            generics.params.push(syn::parse_quote!(__S: #krate::Scalar));
            syn::parse_quote!(__S)
        }
    };
    let (impl_generics, _, _) = generics.split_for_impl();
    let (_, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut where_clause = where_clause
        .cloned()
        .unwrap_or_else(|| syn::parse_quote!(where));
    for m in members.iter().filter(|m| matches!(m.role, Role::Module)) {
        let ty = &m.ty;
        where_clause
            .predicates
            .push(syn::parse_quote!(#ty: #krate::Module<#scalar>));
    }

    let fields = members.iter().map(|m| {
        let ident = &m.ident;
        let doc = format!("The parameters of `{ident}`.");
        let ty = match m.role {
            Role::Module => quote!(#krate::Params<'t, T>),
            Role::Param => quote!(#krate::__private::Var<'t, T>),
        };
        quote!(#[doc = #doc] pub #ident: #ty,)
    });
    let specs = members.iter().map(|m| {
        let (ident, ty) = (&m.ident, &m.ty);
        let key = ident.to_string();
        match m.role {
            Role::Module => quote_spanned! {ty.span()=>
                specs.extend(#krate::prefixed(#key, <#ty as #krate::Module<#scalar>>::parameters(&self.#ident)));
            },
            Role::Param => quote!(specs.push(self.#ident.spec(#key));),
        }
    });
    let views = members.iter().map(|m| {
        let ident = &m.ident;
        let key = ident.to_string();
        match m.role {
            Role::Module => quote!(#ident: p.child(#key),),
            Role::Param => quote!(#ident: p.get(#key),),
        }
    });
    let struct_doc = format!(
        "The parameters of a [`{name}`] on one tape, by field: what its `forward_fields` \
         reads (made by `#[derive(Module)]`)."
    );
    let kind = name.to_string();
    let call = quote_spanned! {name.span()=>
        #name::forward_fields(self, x, fields)
    };

    Ok(quote! {
        #[doc = #struct_doc]
        #vis struct #params_name<'t, T: #krate::Scalar> {
            #(#fields)*
            _tape: ::core::marker::PhantomData<&'t T>,
        }

        impl #impl_generics #krate::Module<#scalar> for #name #ty_generics #where_clause {
            fn parameters(&self) -> ::std::vec::Vec<#krate::ParamSpec> {
                let mut specs = ::std::vec::Vec::new();
                #(#specs)*
                specs
            }

            #[track_caller]
            fn forward<'t>(
                &self,
                x: #krate::__private::Var<'t, #scalar>,
                p: &#krate::Params<'t, #scalar>,
            ) -> #krate::__private::Var<'t, #scalar> {
                let _scope = p.scope(#kind);
                let fields = #params_name {
                    #(#views)*
                    _tape: ::core::marker::PhantomData,
                };
                #call
            }
        }
    })
}
