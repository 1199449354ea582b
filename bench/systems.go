package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// System is a server the side-by-side harness measures: how to start it on
// loopback with a fresh data directory, and what its own ways of making
// data queryable and of flushing and compacting it are.
type System struct {
	// Name labels the system's rows.
	Name string
	// RemoteWriteV2 says whether it takes remote write 2.0.
	RemoteWriteV2 bool
	// peer says how to start it listening on addr, where it serves remote
	// write and the Prometheus API.
	peer func(addr string) PeerSpec
	// settle makes every acknowledged sample queryable.
	settle func(ctx context.Context, in *Instance) error
	// disk flushes and compacts, stops the instance and measures its data.
	disk func(ctx context.Context, in *Instance) (Disk, error)
}

// Instance is a started System.
type Instance struct {
	*Peer
	// WriteURL is the remote-write endpoint.
	WriteURL string
	// APIURL is the base of the Prometheus HTTP API (before /api/v1/...).
	APIURL string
}

// Disk is what a system keeps on disk once it has flushed and compacted.
type Disk struct {
	// Bytes is the data the system needs to serve what it took in.
	Bytes int64
	// Reserve is space the system holds beside it that carries no data
	// (Immune: write-ahead log files Pebble keeps for reuse); zero for
	// systems without such.
	Reserve int64
	// What says what was measured.
	What string
	// ToolCPU is the CPU time of processes the system's flush or
	// compaction ran beside the server (immune compact).
	ToolCPU time.Duration
}

// Start starts the system on a free loopback port.
func (s System) Start(ctx context.Context) (*Instance, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	p, err := StartPeer(ctx, s.peer(addr))
	if err != nil {
		return nil, err
	}
	return &Instance{Peer: p, WriteURL: "http://" + addr + "/api/v1/write", APIURL: "http://" + addr}, nil
}

// Settle makes every acknowledged sample queryable.
func (s System) Settle(ctx context.Context, in *Instance) error {
	if s.settle == nil {
		return nil
	}
	return s.settle(ctx, in)
}

// Disk flushes and compacts the instance's data the system's own way,
// terminates the instance (its directory stays for Stop to remove) and
// measures the directory.
func (s System) Disk(ctx context.Context, in *Instance) (Disk, error) { return s.disk(ctx, in) }

// ImmuneSystem is Immune run from bin, with writes acknowledged only once
// synced to disk; extra are more flags for `immune serve`.
func ImmuneSystem(bin string, extra ...string) System {
	return System{
		Name:          "immune",
		RemoteWriteV2: true,
		peer: func(addr string) PeerSpec {
			return PeerSpec{Name: "immune", Binary: bin,
				Args: func(dir string) []string {
					return append([]string{"serve", "--data-dir", dir, "--http-listen", addr, "--opentsdb-listen=", "--log-level", "warn"}, extra...)
				},
				ReadyURL: "http://" + addr + "/-/ready"}
		},
		disk: func(ctx context.Context, in *Instance) (Disk, error) {
			if err := in.Terminate(); err != nil {
				return Disk{}, err
			}
			compact := exec.CommandContext(ctx, bin, "compact", "--data-dir", in.DataDir)
			out, err := compact.CombinedOutput()
			if err != nil {
				return Disk{}, fmt.Errorf("immune compact: %w: %s", err, out)
			}
			toolCPU := compact.ProcessState.UserTime() + compact.ProcessState.SystemTime()
			// After a full compaction the log files hold nothing live:
			// Pebble keeps up to five for reuse (fsyncs of a reused file
			// need no metadata update).
			logs, err := dirBytes(in.DataDir, func(name string) bool { return strings.HasSuffix(name, ".log") })
			if err != nil {
				return Disk{}, err
			}
			all, err := dirBytes(in.DataDir, nil)
			return Disk{Bytes: all - logs, Reserve: logs, ToolCPU: toolCPU,
				What: "data directory after a graceful stop and `immune compact`, less Pebble's reusable log files (shown as reserve)"}, err
		},
	}
}

// VictoriaMetricsSystem is single-node VictoriaMetrics run from bin (Debian
// package victoria-metrics), its query cache off so that repeated queries
// measure the work.
func VictoriaMetricsSystem(bin string) System {
	return System{
		Name: "victoria-metrics",
		peer: func(addr string) PeerSpec {
			return PeerSpec{Name: "victoria-metrics", Binary: bin, Package: "victoria-metrics",
				Args: func(dir string) []string {
					return []string{"-storageDataPath", dir, "-httpListenAddr", addr, "-search.disableCache",
						"-retentionPeriod", "10y", "-loggerLevel", "INFO"}
				},
				ReadyURL: "http://" + addr + "/health"}
		},
		settle: func(ctx context.Context, in *Instance) error {
			return getOK(ctx, in.APIURL+"/internal/force_flush")
		},
		disk: func(ctx context.Context, in *Instance) (Disk, error) {
			if err := getOK(ctx, in.APIURL+"/internal/force_flush"); err != nil {
				return Disk{}, err
			}
			// The merge runs in the background and says in the log when it is done.
			if err := getOK(ctx, in.APIURL+"/internal/force_merge"); err != nil {
				return Disk{}, err
			}
			wait, cancel := context.WithTimeout(ctx, 30*time.Minute)
			defer cancel()
			if err := in.AwaitLog(wait, `forced merge for partition_prefix="" has been successfully finished`); err != nil {
				return Disk{}, err
			}
			if err := in.Terminate(); err != nil {
				return Disk{}, err
			}
			all, err := dirBytes(in.DataDir, nil)
			return Disk{Bytes: all, What: "data directory after /internal/force_flush, /internal/force_merge to its end and a graceful stop"}, err
		},
	}
}

// PrometheusSystem is Prometheus run from bin (Debian package prometheus)
// as a remote-write receiver.
func PrometheusSystem(bin string) System {
	return System{
		Name: "prometheus",
		peer: func(addr string) PeerSpec {
			return PeerSpec{Name: "prometheus", Binary: bin, Package: "prometheus",
				Files: map[string]string{"prometheus.yml": "global: {}\n"},
				Args: func(dir string) []string {
					return []string{"--config.file", filepath.Join(filepath.Dir(dir), "prometheus.yml"),
						"--storage.tsdb.path", dir, "--storage.tsdb.retention.time", "10y",
						"--web.listen-address", addr, "--web.enable-remote-write-receiver", "--web.enable-admin-api",
						"--log.level", "warn"}
				},
				ReadyURL: "http://" + addr + "/-/ready"}
		},
		disk: func(ctx context.Context, in *Instance) (Disk, error) {
			// A snapshot writes the head as a block beside the compacted
			// blocks: all the data, without the write-ahead log.
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.APIURL+"/api/v1/admin/tsdb/snapshot", nil)
			if err != nil {
				return Disk{}, err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return Disk{}, err
			}
			defer resp.Body.Close()
			var snap struct {
				Data struct {
					Name string `json:"name"`
				} `json:"data"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil || snap.Data.Name == "" {
				return Disk{}, fmt.Errorf("snapshot: %s: %v", resp.Status, err)
			}
			if err := in.Terminate(); err != nil {
				return Disk{}, err
			}
			all, err := dirBytes(filepath.Join(in.DataDir, "snapshots", snap.Data.Name), nil)
			return Disk{Bytes: all, What: "a TSDB snapshot (/api/v1/admin/tsdb/snapshot: its compacted blocks and the head written as a block; no WAL)"}, err
		},
	}
}

// getOK GETs u and wants a 2xx reply.
func getOK(ctx context.Context, u string) error {
	_, err := getBody(ctx, u)
	return err
}

// dirBytes sums the sizes of the files under dir whose names match (all
// files if match is nil).
func dirBytes(dir string, match func(name string) bool) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (match != nil && !match(d.Name())) {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked
		}
		if err == nil {
			n += info.Size()
		}
		return err
	})
	return n, err
}
