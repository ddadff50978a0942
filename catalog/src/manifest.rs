//! Snapshot manifests in Avro object-container format.
//!
//! A committed snapshot has two files under `snapshots/<collection-id>/<snapshot-id>/`:
//! - `metadata.avro`: one [`SnapshotMetadata`] record (format version, identity, the Lance
//!   version, the Arrow schema as IPC bytes and as JSON, primary key, vector index definitions,
//!   collection properties, totals);
//! - `manifest.avro`: one [`VersionFile`] record per file the pinned version needs (path relative
//!   to the data root, kind, size, rows, fragment, checksum).
//!
//! Both carry the format version in their header metadata (`quiver.format_version`, e.g. `1.0`).
//! Readers accept any `1.x` and reject a newer major version with a clear error. The schemas are
//! documented in `docs/snapshots.md`; any standard Avro reader (`fastavro`, `avro-tools`) reads
//! the files. Decoding is bounded: files over [`MAX_MANIFEST_BYTES`] are refused before reading,
//! and Avro allocations are capped, so a corrupt length field cannot exhaust memory.

use std::collections::HashMap;
use std::sync::{Arc, Once};

use apache_avro::types::Value;
use apache_avro::{Reader, Schema as AvroSchema, Writer};
use arrow::datatypes::Schema;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::{ObjectStoreExt, PutPayload};

use crate::error::{CatalogError, Result};
use crate::indices::VectorIndexInfo;
use crate::inventory::{FileKind, VersionFile};
use crate::location::DataRoot;

/// The manifest format this build writes.
pub const FORMAT_VERSION: &str = "1.0";

/// The major format version this build reads.
pub const FORMAT_MAJOR: u32 = 1;

/// Header metadata key holding the format version.
pub const FORMAT_KEY: &str = "quiver.format_version";

/// Largest manifest file read.
pub const MAX_MANIFEST_BYTES: u64 = 2 << 30;

/// Largest single allocation the Avro decoder may make.
const MAX_AVRO_ALLOCATION: usize = 512 << 20;

const FILE_SCHEMA: &str = r#"{
  "type": "record", "name": "ManifestFile", "namespace": "io.quiver.snapshot",
  "fields": [
    {"name": "path", "type": "string"},
    {"name": "kind", "type": {"type": "enum", "name": "FileKind",
      "symbols": ["DATA", "DELETION", "INDEX", "VERSION_MANIFEST"]}},
    {"name": "size_bytes", "type": "long"},
    {"name": "row_count", "type": ["null", "long"], "default": null},
    {"name": "fragment_id", "type": ["null", "long"], "default": null},
    {"name": "checksum", "type": ["null", "string"], "default": null}
  ]
}"#;

const METADATA_SCHEMA: &str = r#"{
  "type": "record", "name": "SnapshotMetadata", "namespace": "io.quiver.snapshot",
  "fields": [
    {"name": "format_version", "type": "string"},
    {"name": "snapshot_id", "type": "string"},
    {"name": "snapshot_name", "type": "string"},
    {"name": "database", "type": "string"},
    {"name": "collection", "type": "string"},
    {"name": "collection_id", "type": "string"},
    {"name": "comment", "type": ["null", "string"], "default": null},
    {"name": "lance_version", "type": "long"},
    {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "arrow_schema", "type": "bytes"},
    {"name": "schema_json", "type": "string"},
    {"name": "primary_key", "type": {"type": "array", "items": "string"}},
    {"name": "indices", "type": {"type": "array", "items": {
      "type": "record", "name": "VectorIndex", "fields": [
        {"name": "name", "type": "string"},
        {"name": "column", "type": "string"},
        {"name": "index_type", "type": "string"},
        {"name": "metric", "type": "string"},
        {"name": "rows_indexed", "type": "long"},
        {"name": "details", "type": "string"}
      ]}}},
    {"name": "properties", "type": {"type": "map", "values": "string"}},
    {"name": "rows", "type": "long"},
    {"name": "files", "type": "long"},
    {"name": "bytes", "type": "long"}
  ]
}"#;

/// The metadata record of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotMetadata {
    /// The format version written.
    pub format_version: String,
    /// The snapshot's id.
    pub snapshot_id: String,
    /// The snapshot's name.
    pub snapshot_name: String,
    /// The collection's database.
    pub database: String,
    /// The collection's name.
    pub collection: String,
    /// The collection's id.
    pub collection_id: String,
    /// The snapshot's comment.
    pub comment: Option<String>,
    /// The Lance version pinned.
    pub lance_version: u64,
    /// When the snapshot was created.
    pub created_at: DateTime<Utc>,
    /// The collection's schema at that version.
    pub schema: Arc<Schema>,
    /// Primary key columns.
    pub primary_key: Vec<String>,
    /// Vector index definitions.
    pub indices: Vec<VectorIndexInfo>,
    /// Collection properties.
    pub properties: HashMap<String, String>,
    /// Rows visible at the version.
    pub rows: u64,
    /// Files listed in `manifest.avro`.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

fn schemas() -> Result<(AvroSchema, AvroSchema)> {
    let parse = |s: &str| AvroSchema::parse_str(s).map_err(|e| CatalogError::Avro(e.to_string()));
    Ok((parse(FILE_SCHEMA)?, parse(METADATA_SCHEMA)?))
}

fn avro(e: apache_avro::Error) -> CatalogError {
    CatalogError::Avro(e.to_string())
}

fn long(v: u64) -> Value {
    Value::Long(i64::try_from(v).unwrap_or(i64::MAX))
}

fn optional<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    match v {
        Some(v) => Value::Union(1, Box::new(f(v))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

fn kind_index(kind: FileKind) -> u32 {
    match kind {
        FileKind::Data => 0,
        FileKind::Deletion => 1,
        FileKind::Index => 2,
        FileKind::VersionManifest => 3,
    }
}

/// Arrow IPC stream bytes holding just `schema`.
fn schema_ipc(schema: &Schema) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
    writer.finish()?;
    Ok(writer.into_inner()?)
}

/// The schema as readable JSON: `[{"name", "type", "nullable"}]`.
fn schema_json(schema: &Schema) -> String {
    let fields: Vec<serde_json::Value> = schema
        .fields()
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name(),
                "type": f.data_type().to_string(),
                "nullable": f.is_nullable(),
            })
        })
        .collect();
    serde_json::Value::Array(fields).to_string()
}

fn write_container(schema: &AvroSchema, records: Vec<Value>) -> Result<Vec<u8>> {
    let mut writer = Writer::new(schema, Vec::new()).map_err(avro)?;
    writer
        .add_user_metadata(FORMAT_KEY.to_string(), FORMAT_VERSION)
        .map_err(avro)?;
    for record in records {
        writer.append_value(record).map_err(avro)?;
    }
    writer.into_inner().map_err(avro)
}

/// Encodes the file list (`manifest.avro`).
pub fn encode_files(files: &[VersionFile]) -> Result<Vec<u8>> {
    let (file_schema, _) = schemas()?;
    let records = files
        .iter()
        .map(|f| {
            Value::Record(vec![
                ("path".into(), Value::String(f.path.clone())),
                (
                    "kind".into(),
                    Value::Enum(kind_index(f.kind), f.kind.as_str().to_string()),
                ),
                ("size_bytes".into(), long(f.size_bytes)),
                ("row_count".into(), optional(f.row_count, long)),
                ("fragment_id".into(), optional(f.fragment_id, long)),
                (
                    "checksum".into(),
                    optional(f.checksum.clone(), Value::String),
                ),
            ])
        })
        .collect();
    write_container(&file_schema, records)
}

/// Encodes the metadata record (`metadata.avro`).
pub fn encode_metadata(m: &SnapshotMetadata) -> Result<Vec<u8>> {
    let (_, metadata_schema) = schemas()?;
    let indices = m
        .indices
        .iter()
        .map(|ix| {
            Value::Record(vec![
                ("name".into(), Value::String(ix.name.clone())),
                ("column".into(), Value::String(ix.column.clone())),
                ("index_type".into(), Value::String(ix.index_type.clone())),
                ("metric".into(), Value::String(ix.metric.clone())),
                ("rows_indexed".into(), long(ix.rows_indexed)),
                ("details".into(), Value::String(ix.details.clone())),
            ])
        })
        .collect();
    let record = Value::Record(vec![
        (
            "format_version".into(),
            Value::String(m.format_version.clone()),
        ),
        ("snapshot_id".into(), Value::String(m.snapshot_id.clone())),
        (
            "snapshot_name".into(),
            Value::String(m.snapshot_name.clone()),
        ),
        ("database".into(), Value::String(m.database.clone())),
        ("collection".into(), Value::String(m.collection.clone())),
        (
            "collection_id".into(),
            Value::String(m.collection_id.clone()),
        ),
        ("comment".into(), optional(m.comment.clone(), Value::String)),
        ("lance_version".into(), long(m.lance_version)),
        (
            "created_at".into(),
            Value::TimestampMicros(m.created_at.timestamp_micros()),
        ),
        ("arrow_schema".into(), Value::Bytes(schema_ipc(&m.schema)?)),
        ("schema_json".into(), Value::String(schema_json(&m.schema))),
        (
            "primary_key".into(),
            Value::Array(m.primary_key.iter().cloned().map(Value::String).collect()),
        ),
        ("indices".into(), Value::Array(indices)),
        (
            "properties".into(),
            Value::Map(
                m.properties
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        ),
        ("rows".into(), long(m.rows)),
        ("files".into(), long(m.files)),
        ("bytes".into(), long(m.bytes)),
    ]);
    write_container(&metadata_schema, vec![record])
}

/// Reads a container's records after checking its format version. `path` names the file in
/// errors.
fn read_container(bytes: &[u8], path: &str) -> Result<Vec<Value>> {
    static CAP: Once = Once::new();
    CAP.call_once(|| {
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
    });
    let corrupt = |message: String| CatalogError::CorruptManifest {
        path: path.to_string(),
        message,
    };
    let reader = Reader::new(bytes).map_err(|e| corrupt(e.to_string()))?;
    let version = reader
        .user_metadata()
        .get(FORMAT_KEY)
        .map(|v| String::from_utf8_lossy(v).to_string())
        .ok_or_else(|| corrupt(format!("no {FORMAT_KEY} in the header")))?;
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| corrupt(format!("unreadable format version '{version}'")))?;
    if major != FORMAT_MAJOR {
        return Err(CatalogError::UnsupportedManifestVersion {
            path: path.to_string(),
            found: version,
            supported: FORMAT_MAJOR,
        });
    }
    reader
        .map(|r| r.map_err(|e| corrupt(e.to_string())))
        .collect()
}

/// A record's fields by name.
struct Fields<'a> {
    fields: HashMap<&'a str, &'a Value>,
    path: &'a str,
}

impl<'a> Fields<'a> {
    fn of(value: &'a Value, path: &'a str) -> Result<Self> {
        match value {
            Value::Record(fields) => Ok(Self {
                fields: fields.iter().map(|(k, v)| (k.as_str(), v)).collect(),
                path,
            }),
            other => Err(CatalogError::CorruptManifest {
                path: path.to_string(),
                message: format!("expected a record, found {other:?}"),
            }),
        }
    }

    fn bad(&self, name: &str) -> CatalogError {
        CatalogError::CorruptManifest {
            path: self.path.to_string(),
            message: format!("field '{name}' is missing or has the wrong type"),
        }
    }

    fn get(&self, name: &str) -> Result<&'a Value> {
        let value = self
            .fields
            .get(name)
            .copied()
            .ok_or_else(|| self.bad(name))?;
        Ok(match value {
            Value::Union(_, inner) => inner.as_ref(),
            other => other,
        })
    }

    fn string(&self, name: &str) -> Result<String> {
        match self.get(name)? {
            Value::String(s) | Value::Enum(_, s) => Ok(s.clone()),
            _ => Err(self.bad(name)),
        }
    }

    fn opt_string(&self, name: &str) -> Result<Option<String>> {
        match self.get(name)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(self.bad(name)),
        }
    }

    fn long(&self, name: &str) -> Result<u64> {
        match self.get(name)? {
            Value::Long(v) | Value::TimestampMicros(v) => {
                u64::try_from(*v).map_err(|_| self.bad(name))
            }
            _ => Err(self.bad(name)),
        }
    }

    fn opt_long(&self, name: &str) -> Result<Option<u64>> {
        match self.get(name)? {
            Value::Null => Ok(None),
            _ => self.long(name).map(Some),
        }
    }
}

/// Decodes `manifest.avro`.
pub fn decode_files(bytes: &[u8], path: &str) -> Result<Vec<VersionFile>> {
    read_container(bytes, path)?
        .iter()
        .map(|record| {
            let f = Fields::of(record, path)?;
            let kind_name = f.string("kind")?;
            Ok(VersionFile {
                path: f.string("path")?,
                kind: FileKind::parse(&kind_name).ok_or_else(|| f.bad("kind"))?,
                size_bytes: f.long("size_bytes")?,
                row_count: f.opt_long("row_count")?,
                fragment_id: f.opt_long("fragment_id")?,
                checksum: f.opt_string("checksum")?,
            })
        })
        .collect()
}

/// Decodes `metadata.avro`.
pub fn decode_metadata(bytes: &[u8], path: &str) -> Result<SnapshotMetadata> {
    let records = read_container(bytes, path)?;
    let [record] = records.as_slice() else {
        return Err(CatalogError::CorruptManifest {
            path: path.to_string(),
            message: format!("expected one metadata record, found {}", records.len()),
        });
    };
    let f = Fields::of(record, path)?;
    let schema_bytes = match f.get("arrow_schema")? {
        Value::Bytes(b) => b.clone(),
        _ => return Err(f.bad("arrow_schema")),
    };
    let schema = StreamReader::try_new(std::io::Cursor::new(schema_bytes), None)
        .map_err(|e| CatalogError::CorruptManifest {
            path: path.to_string(),
            message: format!("arrow_schema: {e}"),
        })?
        .schema();
    let strings = |name: &str| -> Result<Vec<String>> {
        match f.get(name)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(f.bad(name)),
                })
                .collect(),
            _ => Err(f.bad(name)),
        }
    };
    let indices = match f.get("indices")? {
        Value::Array(items) => items
            .iter()
            .map(|v| {
                let ix = Fields::of(v, path)?;
                Ok(VectorIndexInfo {
                    name: ix.string("name")?,
                    column: ix.string("column")?,
                    index_type: ix.string("index_type")?,
                    metric: ix.string("metric")?,
                    rows_indexed: ix.long("rows_indexed")?,
                    details: ix.string("details")?,
                })
            })
            .collect::<Result<Vec<_>>>()?,
        _ => return Err(f.bad("indices")),
    };
    let properties = match f.get("properties")? {
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(f.bad("properties")),
            })
            .collect::<Result<HashMap<_, _>>>()?,
        _ => return Err(f.bad("properties")),
    };
    let micros = match f.get("created_at")? {
        Value::TimestampMicros(v) | Value::Long(v) => *v,
        _ => return Err(f.bad("created_at")),
    };
    Ok(SnapshotMetadata {
        format_version: f.string("format_version")?,
        snapshot_id: f.string("snapshot_id")?,
        snapshot_name: f.string("snapshot_name")?,
        database: f.string("database")?,
        collection: f.string("collection")?,
        collection_id: f.string("collection_id")?,
        comment: f.opt_string("comment")?,
        lance_version: f.long("lance_version")?,
        created_at: DateTime::from_timestamp_micros(micros).ok_or_else(|| f.bad("created_at"))?,
        schema,
        primary_key: strings("primary_key")?,
        indices,
        properties,
        rows: f.long("rows")?,
        files: f.long("files")?,
        bytes: f.long("bytes")?,
    })
}

/// The root-relative paths of a snapshot's manifest files.
pub fn manifest_paths(dir: &str) -> (String, String) {
    (
        format!("{dir}/manifest.avro"),
        format!("{dir}/metadata.avro"),
    )
}

/// Writes `bytes` to the root-relative `path`.
pub async fn put(root: &DataRoot, path: &str, bytes: Vec<u8>) -> Result<()> {
    root.store()
        .put(&root.path_of(path), PutPayload::from(Bytes::from(bytes)))
        .await?;
    Ok(())
}

/// Reads the root-relative `path`, refusing files over [`MAX_MANIFEST_BYTES`].
pub async fn get(root: &DataRoot, path: &str) -> Result<Bytes> {
    let location = root.path_of(path);
    let meta = match root.store().head(&location).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(CatalogError::MissingManifest {
                path: path.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    if meta.size > MAX_MANIFEST_BYTES {
        return Err(CatalogError::CorruptManifest {
            path: path.to_string(),
            message: format!("{} bytes is more than a manifest can be", meta.size),
        });
    }
    match root.store().get(&location).await {
        Ok(result) => Ok(result.bytes().await?),
        Err(object_store::Error::NotFound { .. }) => Err(CatalogError::MissingManifest {
            path: path.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};

    fn metadata() -> SnapshotMetadata {
        SnapshotMetadata {
            format_version: FORMAT_VERSION.into(),
            snapshot_id: "s1".into(),
            snapshot_name: "nightly".into(),
            database: "default".into(),
            collection: "docs".into(),
            collection_id: "c1".into(),
            comment: Some("before re-embedding".into()),
            lance_version: 7,
            created_at: DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap(),
            schema: Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new(
                    "embedding",
                    DataType::FixedSizeList(
                        Arc::new(Field::new_list_field(DataType::Float32, true)),
                        4,
                    ),
                    true,
                ),
            ])),
            primary_key: vec!["id".into()],
            indices: vec![VectorIndexInfo {
                name: "idx".into(),
                column: "embedding".into(),
                index_type: "IVF_PQ".into(),
                metric: "l2".into(),
                rows_indexed: 10,
                details: "{}".into(),
            }],
            properties: HashMap::from([("owner".to_string(), "search".to_string())]),
            rows: 10,
            files: 2,
            bytes: 300,
        }
    }

    #[test]
    fn files_and_metadata_round_trip() {
        let files = vec![
            VersionFile {
                path: "collections/c1/data/a.lance".into(),
                kind: FileKind::Data,
                size_bytes: 200,
                row_count: Some(10),
                fragment_id: Some(0),
                checksum: Some("etag".into()),
            },
            VersionFile {
                path: "collections/c1/_versions/1.manifest".into(),
                kind: FileKind::VersionManifest,
                size_bytes: 100,
                row_count: None,
                fragment_id: None,
                checksum: None,
            },
        ];
        let bytes = encode_files(&files).unwrap();
        assert_eq!(decode_files(&bytes, "m").unwrap(), files);
        let m = metadata();
        let bytes = encode_metadata(&m).unwrap();
        assert_eq!(decode_metadata(&bytes, "m").unwrap(), m);
    }

    #[test]
    fn garbage_and_truncation_are_corrupt_manifests_naming_the_file() {
        let bytes = encode_metadata(&metadata()).unwrap();
        for bad in [&b"not avro at all"[..], &bytes[..bytes.len() / 2]] {
            let err = decode_metadata(bad, "snapshots/c1/s1/metadata.avro").unwrap_err();
            assert!(
                matches!(&err, CatalogError::CorruptManifest { path, .. } if path == "snapshots/c1/s1/metadata.avro"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_newer_major_version_is_refused() {
        let (schema, _) = schemas().unwrap();
        let mut writer = Writer::new(&schema, Vec::new()).unwrap();
        writer
            .add_user_metadata(FORMAT_KEY.to_string(), "2.0")
            .unwrap();
        let bytes = writer.into_inner().unwrap();
        let err = decode_files(&bytes, "x/manifest.avro").unwrap_err();
        assert_eq!(
            err.to_string(),
            "snapshot manifest 'x/manifest.avro' has format version 2.0, this Quiver reads major version 1"
        );
    }
}
