//! Ottimate's in-memory data: invoices, vendors and dimensions, each seeded with a few items
//! shaped like an accounts-payable export. IDs are integers from a per-collection range
//! (invoices 1001.., vendors 2001.., dimensions 3001..) so a test can tell them apart at a glance.

use serde_json::{json, Map, Value};

use crate::time::rfc3339_now;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Collection {
    Invoices,
    Vendors,
    Dimensions,
}

impl Collection {
    pub(super) fn from_path(segment: &str) -> Option<Self> {
        match segment {
            "invoices" => Some(Self::Invoices),
            "vendors" => Some(Self::Vendors),
            "dimensions" => Some(Self::Dimensions),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Invoices => "invoices",
            Self::Vendors => "vendors",
            Self::Dimensions => "dimensions",
        }
    }

    pub(super) fn singular(self) -> &'static str {
        match self {
            Self::Invoices => "invoice",
            Self::Vendors => "vendor",
            Self::Dimensions => "dimension",
        }
    }

    /// Fields a create request must carry (non-null).
    pub(super) fn required(self) -> &'static [&'static str] {
        match self {
            Self::Invoices => &["invoice_number", "vendor_id"],
            Self::Vendors => &["name"],
            Self::Dimensions => &["name", "type"],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug)]
pub(super) struct Store {
    items: [Vec<Value>; 3],
    next_id: [u64; 3],
    next_upload: u64,
}

impl Store {
    pub(super) fn seeded() -> Self {
        let at = "2025-01-15T09:30:00Z";
        let invoices = vec![
            json!({"id": 1001, "invoice_number": "INV-SBX-0001", "vendor_id": 2001,
                   "amount": "1250.00", "currency": "USD", "invoice_date": "2025-01-10",
                   "status": "pending_approval", "created_at": at}),
            json!({"id": 1002, "invoice_number": "INV-SBX-0002", "vendor_id": 2002,
                   "amount": "89.90", "currency": "USD", "invoice_date": "2025-01-12",
                   "status": "approved", "created_at": at}),
            json!({"id": 1003, "invoice_number": "INV-SBX-0003", "vendor_id": 2001,
                   "amount": "4310.55", "currency": "USD", "invoice_date": "2025-01-14",
                   "status": "exported", "created_at": at}),
        ];
        let vendors = vec![
            json!({"id": 2001, "name": "Test Vendor - Electronics", "external_id": "ERP-V-001",
                   "active": true, "created_at": at}),
            json!({"id": 2002, "name": "Test Vendor - Produce", "external_id": "ERP-V-002",
                   "active": true, "created_at": at}),
            json!({"id": 2003, "name": "Test Vendor - Linen Service", "external_id": "ERP-V-003",
                   "active": false, "created_at": at}),
        ];
        let dimensions = vec![
            json!({"id": 3001, "name": "Main Kitchen", "type": "location",
                   "external_id": "ERP-L-01", "created_at": at}),
            json!({"id": 3002, "name": "5000 - Cost of Goods Sold", "type": "gl_account",
                   "external_id": "ERP-GL-5000", "created_at": at}),
            json!({"id": 3003, "name": "Front of House", "type": "department",
                   "external_id": "ERP-D-02", "created_at": at}),
        ];
        Self {
            items: [invoices, vendors, dimensions],
            next_id: [1004, 2004, 3004],
            next_upload: 5001,
        }
    }

    pub(super) fn items(&self, coll: Collection) -> &[Value] {
        &self.items[coll.index()]
    }

    pub(super) fn get(&self, coll: Collection, id: u64) -> Option<Value> {
        self.items(coll).iter().find(|item| item["id"] == id).cloned()
    }

    /// Stores a new item; the server assigns `id` and `created_at` whatever the client sent.
    pub(super) fn create(&mut self, coll: Collection, mut fields: Map<String, Value>) -> Value {
        let i = coll.index();
        let id = self.next_id[i];
        self.next_id[i] += 1;
        fields.insert("id".into(), id.into());
        fields.insert("created_at".into(), rfc3339_now().into());
        if coll == Collection::Invoices {
            fields.entry("status").or_insert_with(|| "draft".into());
        }
        let item = Value::Object(fields);
        self.items[i].push(item.clone());
        item
    }

    pub(super) fn next_upload_id(&mut self) -> u64 {
        let id = self.next_upload;
        self.next_upload += 1;
        id
    }
}
