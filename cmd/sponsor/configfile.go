package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

// configFlag is the flag (and, as SPONSOR_CONFIG, the variable) that names
// a YAML configuration file. A command that registers it reads its flags'
// values from that file too: the keys are the flag names
// (state-dir: /var/lib/sponsor), and a flag on the command line or a
// SPONSOR_* variable wins over the file, which wins over the defaults.
const configFlag = "config"

// registerConfigFlag registers --config in fs.
func registerConfigFlag(fs *flag.FlagSet) {
	fs.String(configFlag, "", "YAML file of settings, keys are the flag names (state-dir: /var/lib/sponsor); flags and SPONSOR_* variables win over it")
}

// fileSources records, for each flag set parsed with a configuration file,
// the flags the file set and the file's name, for `sponsor config print`.
var fileSources sync.Map // *flag.FlagSet -> map[string]string (flag name -> file)

// fromFile returns the configuration file that set flag name of fs, or "".
func fromFile(fs *flag.FlagSet, name string) string {
	m, ok := fileSources.Load(fs)
	if !ok {
		return ""
	}
	return m.(map[string]string)[name]
}

// configFileArg returns the configuration file named by args (--config FILE
// or --config=FILE, before any "--"), else by SPONSOR_CONFIG, else "".
func configFileArg(args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != configFlag {
			continue
		}
		if hasValue {
			return value
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return os.Getenv(envName(configFlag))
}

// applyConfigFile sets the flags of fs from the configuration file that args
// or SPONSOR_CONFIG name, if fs has a --config flag and a file is named. It is
// the first step of parse: the environment and the command line come after
// and win.
func applyConfigFile(fs *flag.FlagSet, args []string) error {
	if fs.Lookup(configFlag) == nil {
		return nil
	}
	path := configFileArg(args)
	if path == "" {
		return nil
	}
	set, err := loadConfigFile(fs, path)
	if err != nil {
		return err
	}
	fileSources.Store(fs, set)
	return nil
}

// loadConfigFile sets the flags of fs from the YAML file path, strictly:
// every key must be a flag of fs, and every value of the flag's type. It
// returns the names of the flags it set, each mapped to path.
func loadConfigFile(fs *flag.FlagSet, path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configuration file: %w", err)
	}
	values, err := decodeConfig(data)
	if err != nil {
		return nil, fmt.Errorf("configuration file %s: %w", path, err)
	}
	set := map[string]string{}
	var errs []error
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		fl := fs.Lookup(key)
		switch {
		case key == configFlag:
			errs = append(errs, fmt.Errorf("%s: key %q: a configuration file cannot name another one", path, key))
			continue
		case fl == nil:
			if near := nearestFlag(fs, key); near != "" {
				errs = append(errs, fmt.Errorf("%s: unknown key %q: did you mean %q? (keys are the flags of %s, see --help)", path, key, near, fs.Name()))
			} else {
				errs = append(errs, fmt.Errorf("%s: unknown key %q (keys are the flags of %s, see --help)", path, key, fs.Name()))
			}
			continue
		}
		s, err := configValue(fl, values[key])
		if err == nil {
			if err = fl.Value.Set(s); err != nil {
				err = fmt.Errorf("%q: %w", s, err)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: key %q: %w", path, key, err))
			continue
		}
		set[key] = path
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return set, nil
}

// decodeConfig decodes a YAML mapping of keys to values; numbers stay
// json.Number, so integers are not rounded through float64.
func decodeConfig(data []byte) (map[string]any, error) {
	j, err := yaml.YAMLToJSONStrict(data) // duplicate keys are an error
	if err != nil {
		return nil, err
	}
	if t := bytes.TrimSpace(j); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return map[string]any{}, nil // an empty file
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var values map[string]any
	if err := dec.Decode(&values); err != nil {
		return nil, errors.New("want a mapping of flag names to values (state-dir: /var/lib/sponsor)")
	}
	return values, nil
}

// configValue returns the text of v for fl's Value.Set, or an error when v is
// not of fl's type: booleans for boolean flags, integers for integer flags,
// numbers for float flags, strings (like "24h") for durations, strings for
// string flags (a list of strings is joined with commas, as in brokers).
func configValue(fl *flag.Flag, v any) (string, error) {
	kind := "string"
	if g, ok := fl.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case bool:
			kind = "bool"
		case int, int64, uint, uint64:
			kind = "int"
		case float64:
			kind = "float"
		case time.Duration:
			kind = "duration"
		}
	}
	switch kind {
	case "bool":
		if b, ok := v.(bool); ok {
			return fmt.Sprint(b), nil
		}
		return "", fmt.Errorf("want true or false, got %s", describe(v))
	case "int":
		if n, ok := v.(json.Number); ok && !strings.ContainsAny(n.String(), ".eE") {
			return n.String(), nil
		}
		return "", fmt.Errorf("want an integer, got %s", describe(v))
	case "float":
		if n, ok := v.(json.Number); ok {
			return n.String(), nil
		}
		return "", fmt.Errorf("want a number, got %s", describe(v))
	case "duration":
		if s, ok := v.(string); ok {
			return s, nil
		}
		return "", fmt.Errorf("want a duration such as 10s or 24h, got %s", describe(v))
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("want a string or a list of strings, got a list holding %s", describe(e))
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("want a string, got %s (quote it)", describe(v))
}

// describe names the YAML type of a decoded value, for errors.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing (null)"
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case json.Number:
		return "the number " + v.String()
	case string:
		return fmt.Sprintf("the string %q", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// nearestFlag returns the flag of fs whose name is closest to key (a
// misspelt key of the --config file), or "" when none is close: at most
// two edits, or a third of the name's length for long names.
func nearestFlag(fs *flag.FlagSet, key string) string {
	best, bestD := "", 0
	fs.VisitAll(func(fl *flag.Flag) {
		d := editDistance(strings.ReplaceAll(key, "_", "-"), fl.Name)
		if d <= max(2, len(fl.Name)/3) && (best == "" || d < bestD) {
			best, bestD = fl.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
