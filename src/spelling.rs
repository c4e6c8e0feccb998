//! States and kinds as enums with one spelling per variant: the same text in the catalog's
//! columns, in JSON, in metrics labels and in what the CLI prints. A state is decoded once,
//! where it enters the program, and compared as an enum everywhere else.

/// A text that names no variant of an enum: the catalog holds a state this build does not
/// know (written by a newer sluice, or edited by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a known {what}")]
pub struct UnknownSpelling {
    pub what: &'static str,
    pub text: String,
}

/// Declares an enum whose variants each have one spelling, with `as_str`, `Display`,
/// `Serialize`, `FromStr` and `TryFrom<String>` all using it.
macro_rules! spelled_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The one spelling of this variant.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::spelling::UnknownSpelling;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::spelling::UnknownSpelling {
                        what: stringify!($name),
                        text: text.to_string(),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::spelling::UnknownSpelling;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }
    };
}
pub(crate) use spelled_enum;

#[cfg(test)]
mod tests {
    spelled_enum! {
        enum Light {
            Red => "red",
            AmberFlashing => "amber_flashing",
        }
    }

    #[test]
    fn one_spelling_in_text_json_and_parsing() {
        for l in Light::ALL {
            let json = serde_json::to_string(l).unwrap();
            assert_eq!(json, format!("\"{}\"", l.as_str()));
            assert_eq!(l.to_string(), l.as_str());
            assert_eq!(l.as_str().parse::<Light>().unwrap(), *l);
        }
        let e = "green".parse::<Light>().unwrap_err();
        assert_eq!(e.to_string(), "`green` is not a known Light");
    }
}
