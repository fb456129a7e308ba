//! What happened, as data ([`events`]), and the one module that words and
//! prints it ([`reporter`]).

pub mod events;
pub mod reporter;
