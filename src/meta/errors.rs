//! Classification of Graph API errors for sends. (being written)
