/// The OpenAPI 3.1 document of the HTTP API, served at `/api/openapi.json`. Kept beside the
/// routes it describes (`HTTPAPI.routes`); a test runs Schemathesis against a live server with it.
public enum OpenAPIDocument {
    public static let text = #"""
{
  "openapi": "3.1.0",
  "info": {
    "title": "Cairn",
    "version": "1",
    "description": "Runs, their history and state, live events, and workers of a Cairn coordinator. Every request needs one of the coordinator's tokens (Authorization: Bearer TOKEN) when it has them: 401 for a missing or unknown token, 403 for a token whose role (reader, submitter, admin; a worker's token reads nothing) may not do what was asked. Errors are {code, message}."
  },
  "security": [{"bearer": []}],
  "paths": {
    "/api/runs": {
      "get": {
        "operationId": "listRuns",
        "summary": "Runs, newest first",
        "parameters": [
          {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["queued", "running", "paused", "completed", "failed", "cancelled"]}},
          {"name": "graph", "in": "query", "schema": {"type": "string"}},
          {"name": "since", "in": "query", "description": "created within this long: 30m, 24h, 7d", "schema": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)$"}},
          {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
          {"name": "cursor", "in": "query", "description": "a page's next_cursor: the runs after it (keyset pagination: a page costs the same however deep)", "schema": {"type": "string"}}
        ],
        "responses": {
          "200": {"description": "runs", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunList"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}
        }
      },
      "post": {
        "operationId": "submitRun",
        "summary": "Submit a run of a graph file",
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["graph"],
            "additionalProperties": false,
            "properties": {
              "graph": {"type": "string", "minLength": 1, "description": "the graph file's text (YAML or JSON); one that does not parse or validate gets 400 naming the line"},
              "file_name": {"type": "string"},
              "input": {"type": "object", "description": "channel to value"},
              "run_id": {"type": "string"},
              "durability": {"type": "string", "enum": ["hot", "sync"]}
            }
          }}}
        },
        "responses": {
          "201": {"description": "the run, submitted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "409": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}": {
      "parameters": [{"$ref": "#/components/parameters/RunID"}],
      "get": {
        "operationId": "getRun",
        "responses": {
          "200": {"description": "the run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/cancel": {
      "parameters": [{"$ref": "#/components/parameters/RunID"}],
      "post": {
        "operationId": "cancelRun",
        "responses": {
          "200": {"description": "the run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "409": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/resume": {
      "parameters": [{"$ref": "#/components/parameters/RunID"}],
      "post": {
        "operationId": "resumeRun",
        "summary": "Answer the question a paused run waits on",
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
              "value": {"description": "the answer: any JSON value"},
              "interrupt_id": {"type": "string"},
              "by": {"type": "string"}
            }
          }}}
        },
        "responses": {
          "200": {"description": "the run, resumed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "409": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/history": {
      "parameters": [{"$ref": "#/components/parameters/RunID"}],
      "get": {
        "operationId": "runHistory",
        "responses": {
          "200": {"description": "its checkpoints, newest first", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/History"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/state": {
      "parameters": [
        {"$ref": "#/components/parameters/RunID"},
        {"name": "checkpoint", "in": "query", "description": "a checkpoint id (default: the newest)", "schema": {"type": "string"}}
      ],
      "get": {
        "operationId": "runState",
        "responses": {
          "200": {"description": "the state at the checkpoint", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/State"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/events": {
      "parameters": [{"$ref": "#/components/parameters/RunID"}],
      "get": {
        "operationId": "runEvents",
        "summary": "Server-Sent Events: the events cairn watch shows, ending with the final one",
        "responses": {
          "200": {"description": "event: KIND / data: JSON", "content": {"text/event-stream": {"schema": {
            "type": "object", "required": ["data"],
            "properties": {"event": {"type": "string"}, "data": {"type": "string", "description": "the event as JSON: run_id, kind, step, final, and the run"}}
          }}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/graph": {
      "parameters": [{"$ref": "#/components/parameters/RunID"}],
      "get": {
        "operationId": "runGraph",
        "summary": "The run's graph: nodes, arrows, DOT and Mermaid text, and an SVG when the coordinator has Graphviz",
        "responses": {
          "200": {"description": "the graph", "content": {"application/json": {"schema": {
            "type": "object", "required": ["name", "version", "nodes", "edges", "dot", "mermaid", "svg"],
            "properties": {
              "name": {"type": "string"}, "version": {"type": "integer"},
              "nodes": {"type": "array", "items": {"type": "object", "required": ["name", "kind"],
                        "properties": {"name": {"type": "string"}, "kind": {"type": "string"}, "interrupt_before": {"type": "boolean"}, "interrupt_after": {"type": "boolean"}}}},
              "edges": {"type": "array", "items": {"type": "object", "required": ["from", "to", "label", "dashed"],
                        "properties": {"from": {"type": "string"}, "to": {"type": "string"}, "label": {"type": ["string", "null"]}, "dashed": {"type": "boolean"}}}},
              "dot": {"type": "string"}, "mermaid": {"type": "string"},
              "svg": {"type": ["string", "null"], "description": "drawn by Graphviz's dot; null when it is not installed"}
            }
          }}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/events": {
      "get": {
        "operationId": "allEvents",
        "summary": "Server-Sent Events of every run: a snapshot of each active run, then its events as they happen (a run's final event ends that run, not the stream). Task events and checkpoints arrive at most once per run per 20 ms, the newest, carrying the run's summary then; every other event at once. every=true sends every event. The stream does not end by itself; a client more than 4 MiB behind is cut off.",
        "parameters": [{"name": "every", "in": "query", "required": false, "description": "true: every event, none held back", "schema": {"type": "string", "enum": ["true", "false"]}}],
        "responses": {
          "200": {"description": "event: KIND / data: JSON", "content": {"text/event-stream": {"schema": {
            "type": "object", "required": ["data"],
            "properties": {"event": {"type": "string"}, "data": {"type": "string", "description": "the event as JSON: run_id, kind, step, final, and the run"}}
          }}}},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/update": {
      "parameters": [{"$ref": "#/components/parameters/RunID"}],
      "post": {
        "operationId": "updateRun",
        "summary": "Write values into a run that is not active, through the channels' reducers",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
          "type": "object", "required": ["values"], "additionalProperties": false,
          "properties": {"values": {"type": "object"}, "as_node": {"type": "string"}, "by": {"type": "string"}}
        }}}},
        "responses": {
          "200": {"description": "the run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/fork": {
      "parameters": [{"$ref": "#/components/parameters/RunID"}],
      "post": {
        "operationId": "forkRun",
        "summary": "Start a new run from a checkpoint of this one",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
          "type": "object", "required": ["checkpoint_id"], "additionalProperties": false,
          "properties": {"checkpoint_id": {"type": "string", "minLength": 1}, "values": {"type": "object"}, "as_node": {"type": "string"},
                         "run_id": {"type": "string"}, "by": {"type": "string"}}
        }}}},
        "responses": {
          "201": {"description": "the new run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/rewind": {
      "parameters": [{"$ref": "#/components/parameters/RunID"}],
      "post": {
        "operationId": "rewindRun",
        "summary": "Re-run a run that is not active from an older checkpoint of its own",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
          "type": "object", "required": ["checkpoint_id"], "additionalProperties": false,
          "properties": {"checkpoint_id": {"type": "string", "minLength": 1}, "values": {"type": "object"}, "as_node": {"type": "string"}, "by": {"type": "string"}}
        }}}},
        "responses": {
          "200": {"description": "the run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/tasks": {
      "parameters": [
        {"$ref": "#/components/parameters/RunID"},
        {"name": "node", "in": "query", "schema": {"type": "string"}},
        {"name": "task", "in": "query", "schema": {"type": "string"}}
      ],
      "get": {
        "operationId": "runTasks",
        "summary": "Every attempt of the run: worker, queue wait, duration, outcome, error",
        "responses": {
          "200": {"description": "attempts", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Records"}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/debug": {
      "parameters": [
        {"$ref": "#/components/parameters/RunID"},
        {"name": "step", "in": "query", "description": "default: the step the run stopped in, or its last", "schema": {"type": "integer", "minimum": 0, "maximum": 4294967295}}
      ],
      "get": {
        "operationId": "debugStep",
        "summary": "Everything about one step (cairn debug --json)",
        "responses": {
          "200": {"description": "the step", "content": {"application/json": {"schema": {"type": "object", "required": ["run", "step", "tasks"]}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/records/{report}": {
      "parameters": [
        {"name": "report", "in": "path", "required": true, "schema": {"type": "string", "enum": ["failures", "durations", "cost", "assets", "attempts", "waiting", "workers"]}},
        {"name": "by", "in": "query", "schema": {"type": "string", "enum": ["run", "node", "graph", "model", "day", "worker"]}},
        {"name": "since", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,9}(ms|s|m|h|d)$"}},
        {"name": "graph", "in": "query", "schema": {"type": "string"}},
        {"name": "run_id", "in": "query", "schema": {"type": "string"}},
        {"name": "uri", "in": "query", "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100000}}
      ],
      "get": {
        "operationId": "records",
        "summary": "The operator's reports: failures, durations (p50/p95/max), cost, assets, attempts, waiting runs, workers",
        "responses": {
          "200": {"description": "named columns and one object per row", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Records"}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/workers": {
      "get": {
        "operationId": "listWorkers",
        "responses": {
          "200": {"description": "connected workers", "content": {"application/json": {"schema": {
            "type": "object", "required": ["workers"],
            "properties": {"workers": {"type": "array", "items": {"$ref": "#/components/schemas/Worker"}}}
          }}}},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/stats": {
      "get": {
        "operationId": "stats",
        "responses": {
          "200": {"description": "counters", "content": {"application/json": {"schema": {"type": "object", "required": ["runs_by_status"]}}}},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/verify": {
      "post": {
        "operationId": "verify",
        "summary": "Check stored runs byte for byte (cairn verify)",
        "description": "Every value's SHA-256, every checkpoint's parent, every channel version. With all, also rows no run owns and the SQLite file's pages. 200 either way: ok says whether all was intact, damage lists what was not.",
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"oneOf": [
            {"type": "object", "required": ["run_ids"], "additionalProperties": false,
             "properties": {"run_ids": {"type": "array", "minItems": 1, "maxItems": 10000, "items": {"type": "string", "minLength": 1}}}},
            {"type": "object", "required": ["all"], "additionalProperties": false, "properties": {"all": {"const": true}}}
          ]}}}
        },
        "responses": {
          "200": {"description": "what was checked, and any damage", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VerifyReport"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/cleanup": {
      "post": {
        "operationId": "cleanup",
        "summary": "Delete finished runs with everything they own (cairn cleanup)",
        "description": "Completed, failed and cancelled runs finished at least older_than ago. Running and paused runs are never taken, nor pinned ones, nor the newest keep_latest of each graph, nor a run a remaining fork was made from. dry_run only says which would go.",
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {
            "type": "object", "required": ["older_than"], "additionalProperties": false,
            "properties": {
              "older_than": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)$", "description": "30d, 12h, 0s (any age)"},
              "statuses": {"type": "array", "items": {"type": "string", "enum": ["completed", "failed", "cancelled"]}, "description": "default: all three"},
              "graph": {"type": "string"},
              "keep_latest": {"type": "integer", "minimum": 0, "maximum": 1000000},
              "dry_run": {"type": "boolean"}
            }
          }}}
        },
        "responses": {
          "200": {"description": "what was (or would be) deleted and kept", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CleanupReport"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/pin": {
      "parameters": [{"$ref": "#/components/parameters/RunID"}],
      "post": {
        "operationId": "pinRun",
        "summary": "Keep a run through every cleanup",
        "responses": {
          "200": {"description": "the run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/runs/{id}/unpin": {
      "parameters": [{"$ref": "#/components/parameters/RunID"}],
      "post": {
        "operationId": "unpinRun",
        "summary": "Let cleanups take a pinned run again",
        "responses": {
          "200": {"description": "the run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/export": {
      "get": {
        "operationId": "exportRuns",
        "summary": "Runs, whole, as one file (cairn export)",
        "description": "The file cairn export writes: zstd, with a SHA-256 manifest. A fork's parent runs come too. Runs must be finished or paused.",
        "parameters": [
          {"name": "runs", "in": "query", "required": true, "description": "run ids, comma-separated", "schema": {"type": "string", "minLength": 1}}
        ],
        "responses": {
          "200": {"description": "the export file", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "409": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/import": {
      "post": {
        "operationId": "importRuns",
        "summary": "Load runs from an export file (cairn import)",
        "description": "The file is checked whole before anything is written: a truncated or altered file is refused (400 invalid_archive), and so is a run id that exists here with other content (409). Importing the same file twice changes nothing.",
        "parameters": [
          {"name": "dry_run", "in": "query", "description": "only check that the file can be imported", "schema": {"type": "boolean"}}
        ],
        "requestBody": {
          "required": true,
          "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        },
        "responses": {
          "200": {"description": "each run of the file", "content": {"application/json": {"schema": {
            "type": "object", "required": ["dry_run", "runs"],
            "properties": {"dry_run": {"type": "boolean"}, "runs": {"type": "array", "items": {
              "type": "object", "required": ["run_id", "already_present"],
              "properties": {"run_id": {"type": "string"}, "already_present": {"type": "boolean"}, "checkpoints": {"type": "integer"},
                             "values": {"type": "integer"}, "attempts": {"type": "integer"}}
            }}}
          }}}},
          "400": {"$ref": "#/components/responses/Error"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "409": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/openapi.json": {
      "get": {
        "operationId": "openapi",
        "responses": {
          "200": {"description": "this document", "content": {"application/json": {"schema": {"type": "object"}}}},
          "401": {"$ref": "#/components/responses/Error"}
        }
      }
    }
  },
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "parameters": {
      "RunID": {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}
    },
    "responses": {
      "Error": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    },
    "schemas": {
      "Error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}
      },
      "Run": {
        "type": "object", "required": ["run_id", "status"],
        "properties": {
          "run_id": {"type": "string"},
          "status": {"type": "string", "enum": ["queued", "running", "paused", "completed", "failed", "cancelled", "damaged"]},
          "graph": {"type": "string"},
          "graph_version": {"type": "integer"},
          "step": {"type": "integer"},
          "cost": {"type": "number"},
          "api_calls": {"type": "integer"},
          "tokens_in": {"type": "integer"},
          "tokens_out": {"type": "integer"},
          "created_at": {"type": "number"},
          "updated_at": {"type": "number"},
          "finished_at": {"type": ["number", "null"]},
          "durability": {"type": "string"},
          "checkpoint_id": {"type": "string"},
          "next": {"type": "array", "items": {"type": "string"}},
          "error": {"type": ["string", "null"]},
          "output": {},
          "interrupt": {},
          "forked_from": {"type": "string"},
          "resume_count": {"type": "integer"},
          "pinned": {"type": "boolean", "description": "present (true) when the run is pinned: every cleanup keeps it"},
          "damage": {"type": "string"}
        }
      },
      "VerifyReport": {
        "type": "object", "required": ["ok", "runs", "damage"],
        "properties": {
          "ok": {"type": "boolean"}, "runs": {"type": "integer"}, "checkpoints": {"type": "integer"}, "values": {"type": "integer"},
          "writes": {"type": "integer"}, "attempts": {"type": "integer"},
          "damage": {"type": "array", "items": {
            "type": "object", "required": ["problem"],
            "properties": {"run_id": {"type": ["string", "null"]}, "checkpoint_id": {"type": ["string", "null"]}, "channel": {"type": ["string", "null"]},
                           "version": {"type": ["string", "null"]}, "problem": {"type": "string"}}
          }}
        }
      },
      "CleanupReport": {
        "type": "object", "required": ["dry_run", "deleted", "kept"],
        "properties": {
          "dry_run": {"type": "boolean"},
          "deleted": {"type": "array", "items": {"$ref": "#/components/schemas/CleanupRun"}},
          "kept": {"type": "array", "items": {"$ref": "#/components/schemas/CleanupRun"}},
          "checkpoints": {"type": "integer"}, "values": {"type": "integer"}, "attempts": {"type": "integer"},
          "graphs": {"type": "integer"}, "bundles": {"type": "integer"}, "bytes_freed": {"type": "integer"}
        }
      },
      "CleanupRun": {
        "type": "object", "required": ["run_id", "status"],
        "properties": {"run_id": {"type": "string"}, "graph": {"type": "string"}, "status": {"type": "string"},
                       "finished_at": {"type": "number"}, "reason": {"type": "string", "description": "why a matching run was kept"}}
      },
      "Records": {
        "type": "object", "required": ["columns", "rows"],
        "properties": {"columns": {"type": "array", "items": {"type": "string"}}, "rows": {"type": "array", "items": {"type": "object"}}}
      },
      "RunList": {
        "type": "object", "required": ["runs"],
        "properties": {"runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
                       "next_cursor": {"type": ["string", "null"], "description": "set when the page is full: ask again with cursor=this"}}
      },
      "History": {
        "type": "object", "required": ["run_id", "checkpoints"],
        "properties": {
          "run_id": {"type": "string"},
          "forked_from": {"type": ["string", "null"]},
          "checkpoints": {"type": "array", "items": {
            "type": "object", "required": ["checkpoint_id", "step", "source"],
            "properties": {
              "checkpoint_id": {"type": "string"}, "parent_id": {"type": ["string", "null"]}, "run_id": {"type": "string"},
              "step": {"type": "integer"}, "source": {"type": "string"}, "created_at": {"type": "number"},
              "next": {"type": "array", "items": {"type": "string"}}, "updated": {"type": "array", "items": {"type": "string"}},
              "tasks": {"type": "array", "items": {"type": "object"}}, "metadata": {}
            }
          }}
        }
      },
      "State": {
        "type": "object", "required": ["run_id", "checkpoint_id", "step", "state"],
        "properties": {
          "run_id": {"type": "string"}, "checkpoint_id": {"type": "string"}, "step": {"type": "integer"},
          "state": {"type": "object"}, "next": {"type": "array", "items": {"type": "string"}}
        }
      },
      "Worker": {
        "type": "object", "required": ["worker_id", "name", "slots"],
        "properties": {
          "worker_id": {"type": "string"}, "name": {"type": "string"}, "slots": {"type": "integer"}, "running": {"type": "integer"},
          "state": {"type": "string"}, "kinds": {"type": "array", "items": {"type": "string"}}, "connected_at": {"type": "number"},
          "last_heartbeat": {"type": "number"}, "tasks_done": {"type": "integer"}, "address": {"type": "string"}
        }
      }
    }
  }
}
"""#
}
