//! What happened, as data ([`events`]), the words for a running stage's
//! steps ([`words`]), and the one module that prints it ([`reporter`]).

pub mod events;
pub mod reporter;
pub mod words;
