//! The GoHighLevel connector: typed Contacts API v2 client, OAuth, rate governor, webhook
//! verification. In progress: see ARCHITECTURE.md.
