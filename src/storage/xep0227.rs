//! XEP-0227 export/import. (STUB)
