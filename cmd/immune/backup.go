package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// backupStore is one store of a data directory that can copy itself while
// serving.
type backupStore interface {
	Backup(dir string) error
}

// backupHandler serves POST /api/v1/admin/backup?dir=DIR: a consistent
// copy of the data directory dataDir into DIR (absolute, new, outside
// dataDir), laid out as a data directory, so `immune serve --data-dir DIR`
// runs on it. The metrics store is copied first: a deployment in the copy
// never refers to samples the copy lacks.
func backupHandler(dataDir string, tsdbStore, deployments backupStore, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		dir := r.FormValue("dir")
		if !filepath.IsAbs(dir) {
			writeBackupError(w, http.StatusBadRequest, fmt.Errorf("dir must be an absolute path, got %q", dir))
			return
		}
		if within(dir, dataDir) {
			writeBackupError(w, http.StatusBadRequest, fmt.Errorf("%s is inside the data directory %s", dir, dataDir))
			return
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			writeBackupError(w, http.StatusInternalServerError, err)
			return
		}
		// Mkdir fails if dir exists, so that the cleanup below only ever
		// removes what this request made.
		if err := os.Mkdir(dir, 0o755); err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, fs.ErrExist) {
				status, err = http.StatusBadRequest, fmt.Errorf("%s already exists: a backup goes to a new directory", dir)
			}
			writeBackupError(w, status, err)
			return
		}
		start := time.Now()
		err := tsdbStore.Backup(tsdbDir(dir))
		if err == nil {
			err = deployments.Backup(deploymentsDir(dir))
		}
		if err != nil {
			log.Error("backup failed", "dir", dir, "err", err)
			writeBackupError(w, http.StatusInternalServerError, errors.Join(err, os.RemoveAll(dir)))
			return
		}
		log.Info("backup written", "dir", dir, "took", time.Since(start))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]string{"dir": dir}})
	}
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(abs, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func writeBackupError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"status": "error", "error": err.Error()})
}

// deploymentsDir is where a data directory keeps deployments and verdicts.
func deploymentsDir(dataDir string) string { return filepath.Join(dataDir, "deployments") }

// runBackup asks a running server for a consistent copy of its data
// directory into --to.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newGateFlags("backup", stderr, false)
	f.Init("backup", flag.ContinueOnError) // a command of its own, not of gate
	to := f.String("to", "", "new directory for the copy, on the server's machine (required)")
	timeout := f.Duration("timeout", 10*time.Minute, "how long to wait for the copy")
	if err := f.parse(args, "to"); err != nil {
		return err
	}
	dir, err := filepath.Abs(*to)
	if err != nil {
		return err
	}
	c := f.client()
	c.timeout = *timeout
	var out struct {
		Data struct {
			Dir string `json:"dir"`
		} `json:"data"`
	}
	if err := c.call(ctx, http.MethodPost, "/api/v1/admin/backup?"+url.Values{"dir": {dir}}.Encode(), nil, &out); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "backup written to %s\n", out.Data.Dir)
	return nil
}
