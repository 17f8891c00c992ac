BEGIN TRANSACTION;
CREATE TABLE audit_log (
	seq INTEGER NOT NULL, 
	event_id INTEGER NOT NULL, 
	ts DOUBLE NOT NULL, 
	kind VARCHAR NOT NULL, 
	actor VARCHAR, 
	event_digest VARCHAR NOT NULL, 
	prev_hash VARCHAR NOT NULL, 
	hash VARCHAR NOT NULL, 
	PRIMARY KEY (seq), 
	UNIQUE (event_id)
);
INSERT INTO "audit_log" VALUES(1,6,1.79659066284806704519e+09,'report.added',NULL,'8d2468ef56d42cebd75971b0041bf28ba10f576d482a2267ab5b0ad2b1e09874','0000000000000000000000000000000000000000000000000000000000000000','e1d249255f86ed94729e80af189d35660d872101d2676500b6a319234673a4b7');
INSERT INTO "audit_log" VALUES(2,12,1.79659066285991168019e+09,'deploy.started','alice','37974cd5955bcef69fd217f778005b54d392fb189e89af6f2e90873545de93f2','e1d249255f86ed94729e80af189d35660d872101d2676500b6a319234673a4b7','37ea9e009b735aef9ec9b945c2c38c388ceb005b2030e97ff5a4a6900238945c');
INSERT INTO "audit_log" VALUES(3,13,1.79659066286421084408e+09,'deploy.finished',NULL,'d82ace29f777f48816ad04e4160d187a88e8e7d9a8257b006e4608a2858db43a','37ea9e009b735aef9ec9b945c2c38c388ceb005b2030e97ff5a4a6900238945c','6b0bc6cc268ff9bf4e66f789ca82d8b88a23a97ab26bb8c890e5bc2fa60ebb83');
INSERT INTO "audit_log" VALUES(4,15,1.79659066287006926538e+09,'flag.changed','alice','82215fee5fb0c2cb596eabb93dfe68491498561d48679fafed8cbb872b40702f','6b0bc6cc268ff9bf4e66f789ca82d8b88a23a97ab26bb8c890e5bc2fa60ebb83','ed31cb0524358de033891bc0be2435815a5466cbf1844734478c95ab64e42adb');
CREATE TABLE audit_signed_heads (
	id INTEGER NOT NULL, 
	entries INTEGER NOT NULL, 
	head VARCHAR NOT NULL, 
	signed_at DOUBLE NOT NULL, 
	key_id VARCHAR NOT NULL, 
	signature VARCHAR NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE cache_entries (
	"key" VARCHAR NOT NULL, 
	pipeline VARCHAR NOT NULL, 
	job_id VARCHAR NOT NULL, 
	run_id INTEGER, 
	created_at DOUBLE NOT NULL, 
	outputs_manifest VARCHAR, 
	components JSON NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "cache_entries" VALUES('k1','ci','lint',1,1.79659066285108232497e+09,NULL,'{"a": "b"}');
CREATE TABLE deploys (
	id INTEGER NOT NULL, 
	environment VARCHAR NOT NULL, 
	release_id VARCHAR NOT NULL, 
	repository VARCHAR NOT NULL, 
	digest VARCHAR NOT NULL, 
	previous_release VARCHAR, 
	actor VARCHAR NOT NULL, 
	run_id INTEGER, 
	state VARCHAR NOT NULL, 
	reason TEXT, 
	started_at DOUBLE NOT NULL, 
	finished_at DOUBLE, 
	pid INTEGER, 
	host VARCHAR, 
	progress JSON, 
	PRIMARY KEY (id)
);
INSERT INTO "deploys" VALUES(1,'production','r-0001','shop','sha256:1111111111111111111111111111111111111111111111111111111111111111',NULL,'alice',1,'succeeded',NULL,1.79659066285991168019e+09,1.79659066286421084408e+09,22142,'vm','{"step": 1, "weight": 10}');
CREATE TABLE environments (
	name VARCHAR NOT NULL, 
	port INTEGER NOT NULL, 
	admin_port INTEGER NOT NULL, 
	live_release VARCHAR, 
	warm_release VARCHAR, 
	routes JSON NOT NULL, 
	generation INTEGER NOT NULL, 
	updated_at DOUBLE NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "environments" VALUES('production',8000,8001,NULL,NULL,'{"backends": []}',0,1.79659066285901618002e+09);
CREATE TABLE events (
	id INTEGER NOT NULL, 
	ts DOUBLE NOT NULL, 
	kind VARCHAR NOT NULL, 
	run_id INTEGER, 
	job_id VARCHAR, 
	state VARCHAR, 
	commit_sha VARCHAR, 
	actor VARCHAR, 
	data JSON NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "events" VALUES(1,1796590662.84104,'run.created',1,NULL,'running','abc123',NULL,'{"pipeline": "ci", "commit_sha": "abc123", "branch": "main", "tag": null, "author": null, "message": null, "committed_at": null, "actor": null, "trigger": {"manual": true}, "parallelism": null, "started_at": 1796590662.84104, "pid": 22142, "host": "vm", "workspace": null}');
INSERT INTO "events" VALUES(2,1796590662.84104,'job.planned',1,'lint','pending','abc123',NULL,'{"ordinal": 0, "name": "lint", "matrix": {}, "needs": [], "plan_status": null, "reason": null}');
INSERT INTO "events" VALUES(3,1796590662.84104,'job.planned',1,'test','pending','abc123',NULL,'{"ordinal": 1, "name": "test", "matrix": {}, "needs": ["lint"], "plan_status": null, "reason": null}');
INSERT INTO "events" VALUES(4,1.79659066284512233735e+09,'job.state',1,'lint','running','abc123',NULL,'{"from": "pending", "started_at": 1796590662.8451223}');
INSERT INTO "events" VALUES(5,1.79659066284726619722e+09,'job.state',1,'lint','success','abc123',NULL,'{"from": "running", "exit_code": 0, "finished_at": 1796590662.8472662}');
INSERT INTO "events" VALUES(6,1.79659066284806704519e+09,'report.added',1,'lint',NULL,NULL,NULL,'{"kind": "gate", "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "summary": {"passed": true}}');
INSERT INTO "events" VALUES(7,1.79659066285118436813e+09,'cache.put',1,'lint',NULL,NULL,NULL,'{"key": "k1", "pipeline": "ci", "outputs": null}');
INSERT INTO "events" VALUES(8,1.79659066285289335251e+09,'lock.queued',1,'test','queued',NULL,NULL,'{"group": "deploy-prod", "ticket": 1}');
INSERT INTO "events" VALUES(9,1.79659066285289335251e+09,'lock.acquired',1,'test','holding',NULL,NULL,'{"group": "deploy-prod", "ticket": 1}');
INSERT INTO "events" VALUES(10,1.79659066285620069502e+09,'lock.released',1,'test','released',NULL,NULL,'{"group": "deploy-prod", "ticket": 1}');
INSERT INTO "events" VALUES(11,1.79659066285694241525e+09,'run.state',1,NULL,'success','abc123',NULL,'{"from": "running", "finished_at": 1796590662.8569424}');
INSERT INTO "events" VALUES(12,1.79659066285991168019e+09,'deploy.started',1,NULL,NULL,NULL,'alice','{"environment": "production", "deploy_id": 1, "release": "r-0001", "repository": "shop", "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "previous": null, "ports": [9000]}');
INSERT INTO "events" VALUES(13,1.79659066286421084408e+09,'deploy.finished',1,NULL,'succeeded',NULL,NULL,'{"environment": "production", "deploy_id": 1, "release": "r-0001", "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "reason": null}');
INSERT INTO "events" VALUES(14,1.79659066286568140985e+09,'smoke.result',NULL,NULL,NULL,NULL,NULL,'{"environment": "production", "passed": true}');
INSERT INTO "events" VALUES(15,1.79659066287006926538e+09,'flag.changed',NULL,NULL,NULL,NULL,'alice','{"environment": "production", "flag": "banner", "version": 1, "change": "defined", "enabled": true, "definition": {"name": "banner", "description": "", "enabled": true, "strategies": [], "variants": []}, "previous": null}');
CREATE TABLE flags (
	environment VARCHAR NOT NULL, 
	kind VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	definition JSON NOT NULL, 
	version INTEGER NOT NULL, 
	updated_at DOUBLE NOT NULL, 
	PRIMARY KEY (environment, kind, name)
);
INSERT INTO "flags" VALUES('production','flag','banner','{"name": "banner", "description": "", "enabled": true, "strategies": [], "variants": []}',1,1.7965906628695869446e+09);
CREATE TABLE jobs (
	run_id INTEGER NOT NULL, 
	job_id VARCHAR NOT NULL, 
	ordinal INTEGER NOT NULL, 
	name VARCHAR NOT NULL, 
	matrix JSON NOT NULL, 
	state VARCHAR NOT NULL, 
	plan_status VARCHAR, 
	reason TEXT, 
	needs JSON NOT NULL, 
	attempts INTEGER NOT NULL, 
	exit_code INTEGER, 
	failure VARCHAR, 
	detail TEXT, 
	started_at DOUBLE, 
	finished_at DOUBLE, 
	cache_key VARCHAR, 
	log_blob VARCHAR, 
	outputs_blob VARCHAR, 
	PRIMARY KEY (run_id, job_id), 
	FOREIGN KEY(run_id) REFERENCES runs (id)
);
INSERT INTO "jobs" VALUES(1,'lint',0,'lint','{}','success',NULL,NULL,'[]',0,0,NULL,NULL,1.79659066284512233735e+09,1.79659066284726619722e+09,NULL,NULL,NULL);
INSERT INTO "jobs" VALUES(1,'test',1,'test','{}','pending',NULL,NULL,'["lint"]',0,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL);
CREATE TABLE lock_tickets (
	id INTEGER NOT NULL, 
	group_name VARCHAR NOT NULL, 
	run_id INTEGER NOT NULL, 
	job_id VARCHAR NOT NULL, 
	state VARCHAR NOT NULL, 
	pid INTEGER NOT NULL, 
	host VARCHAR NOT NULL, 
	created_at DOUBLE NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "lock_tickets" VALUES(1,'deploy-prod',1,'test','released',22142,'vm',1.79659066285289335251e+09);
CREATE TABLE releases (
	release_id VARCHAR NOT NULL, 
	environment VARCHAR NOT NULL, 
	repository VARCHAR NOT NULL, 
	digest VARCHAR NOT NULL, 
	ports JSON NOT NULL, 
	state VARCHAR NOT NULL, 
	created_at DOUBLE NOT NULL, 
	updated_at DOUBLE NOT NULL, 
	PRIMARY KEY (release_id)
);
INSERT INTO "releases" VALUES('r-0001','production','shop','sha256:1111111111111111111111111111111111111111111111111111111111111111','[9000]','starting',1.79659066285991168019e+09,1.79659066285991168019e+09);
CREATE TABLE reports (
	id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	job_id VARCHAR NOT NULL, 
	kind VARCHAR NOT NULL, 
	digest VARCHAR NOT NULL, 
	summary JSON NOT NULL, 
	created_at DOUBLE NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "reports" VALUES(1,1,'lint','gate','sha256:0000000000000000000000000000000000000000000000000000000000000000','{"passed": true}',1.79659066284806704519e+09);
CREATE TABLE runs (
	id INTEGER NOT NULL, 
	pipeline VARCHAR NOT NULL, 
	state VARCHAR NOT NULL, 
	commit_sha VARCHAR, 
	branch VARCHAR, 
	tag VARCHAR, 
	author VARCHAR, 
	message TEXT, 
	committed_at DOUBLE, 
	actor VARCHAR, 
	"trigger" JSON NOT NULL, 
	parallelism INTEGER, 
	started_at DOUBLE NOT NULL, 
	finished_at DOUBLE, 
	pid INTEGER, 
	host VARCHAR, 
	workspace VARCHAR, 
	PRIMARY KEY (id)
);
INSERT INTO "runs" VALUES(1,'ci','success','abc123','main',NULL,NULL,NULL,NULL,NULL,'{"manual": true}',NULL,1796590662.84104,1.79659066285694241525e+09,22142,'vm',NULL);
CREATE TABLE signal_samples (
	id INTEGER NOT NULL, 
	environment VARCHAR NOT NULL, 
	release_id VARCHAR NOT NULL, 
	ts DOUBLE NOT NULL, 
	weight INTEGER NOT NULL, 
	signals JSON NOT NULL, 
	saturation JSON, 
	PRIMARY KEY (id)
);
INSERT INTO "signal_samples" VALUES(1,'production','r-0001',1700000000.0,100,'{"requests": 0}','null');
INSERT INTO "signal_samples" VALUES(2,'production','r-0001',1700000001.0,100,'{"requests": 1}','null');
INSERT INTO "signal_samples" VALUES(3,'production','r-0001',1700000002.0,100,'{"requests": 2}','null');
CREATE INDEX ix_events_run_id ON events (run_id);
CREATE INDEX ix_runs_pipeline_branch_state ON runs (pipeline, branch, state);
CREATE INDEX ix_runs_state ON runs (state);
CREATE INDEX ix_cache_entries_job ON cache_entries (pipeline, job_id, created_at);
CREATE INDEX ix_lock_tickets_run_state ON lock_tickets (run_id, state);
CREATE INDEX ix_lock_tickets_group_state ON lock_tickets (group_name, state);
CREATE INDEX ix_reports_run_kind ON reports (run_id, kind);
CREATE INDEX ix_releases_environment ON releases (environment);
CREATE INDEX ix_deploys_environment_state ON deploys (environment, state);
CREATE INDEX ix_signal_samples_release_ts ON signal_samples (environment, release_id, ts);
COMMIT;
