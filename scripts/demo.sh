#!/usr/bin/env bash
# Builds quiver, loads a small demo collection into ./quiver-data, runs a few queries, then serves
# the data root over Arrow Flight SQL (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

cargo build --workspace --all-targets
QUIVER="$CARGO_TARGET_DIR/debug/quiver"
export QUIVER_DATA="${QUIVER_DATA:-./quiver-data}"

"$QUIVER" sql "DROP TABLE IF EXISTS demo_restored;
DROP TABLE IF EXISTS demo_docs CASCADE;
CREATE TABLE demo_docs (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR, category VARCHAR, embedding VECTOR(4));
INSERT INTO demo_docs VALUES
  (1, 'Arrow columnar format', 'data',   [0.9, 0.1, 0.0, 0.1]),
  (2, 'Lance table format',    'data',   [0.8, 0.2, 0.1, 0.0]),
  (3, 'DataFusion planner',    'query',  [0.1, 0.9, 0.2, 0.0]),
  (4, 'Flight SQL protocol',   'wire',   [0.0, 0.2, 0.9, 0.1]),
  (5, 'Vector search',         'query',  [0.3, 0.7, 0.1, 0.6]);
DESCRIBE demo_docs;
SELECT id, title, l2_distance(embedding, [0.85, 0.15, 0.05, 0.05]) AS distance
  FROM demo_docs ORDER BY distance LIMIT 3;
SELECT query_id, id, title, distance
  FROM knn('demo_docs', 'embedding', (SELECT id, embedding FROM demo_docs WHERE id IN (1, 4)), 2);
SELECT category, count(*) AS docs FROM demo_docs GROUP BY category ORDER BY category;
CREATE SNAPSHOT v1 ON demo_docs COMMENT 'the first five';
DELETE FROM demo_docs WHERE category = 'query';
SELECT (SELECT count(*) FROM demo_docs) AS now, (SELECT count(*) FROM snapshot('demo_docs', 'v1')) AS at_v1;
RESTORE SNAPSHOT v1 ON demo_docs TO demo_restored;
SELECT id, title FROM demo_restored ORDER BY id;"

BIND="${QUIVER_BIND:-127.0.0.1:50051}"
echo
echo "Serving $QUIVER_DATA over Flight SQL. From another terminal:"
echo "  $QUIVER sql --connect grpc://$BIND \"SELECT * FROM demo_docs\""
echo "or any Flight SQL client (ADBC, JDBC, pyarrow) at grpc://$BIND."
exec "$QUIVER" serve --bind "$BIND"
