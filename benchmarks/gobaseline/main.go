// Command fleetbox-baseline does what the Go fleetbox tool's store does, and nothing more,
// so benchmarks.versus_go can time fleetbox-db against the program users would otherwise run.
//
//	fleetbox-baseline list     ROOT            List(): ReadDir of clusters/ and of each cluster, one stat per config
//	fleetbox-baseline ls-json  ROOT            List() + Load() of every config + MarshalIndent of the records
//	fleetbox-baseline free-ips ROOT CIDR LIMIT load every config, then the lowest LIMIT free hosts (gateway skipped)
//	fleetbox-baseline who-has  ROOT IP|MAC     load every config, print the first member holding it
//
// Load is os.ReadFile + encoding/json into the store's VM struct, as internal/store does.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Fixture and VM are the Go store's config.json records.
type Fixture struct {
	HostPath  string `json:"host_path"`
	GuestPath string `json:"guest_path"`
	Label     string `json:"label"`
}

type VM struct {
	Name      string    `json:"name"`
	MAC       string    `json:"mac"`
	CPUs      int       `json:"cpus"`
	MemoryMB  int       `json:"memory_mb"`
	DiskMB    int       `json:"disk_mb"`
	Image     string    `json:"image"`
	CreatedAt time.Time `json:"created_at"`
	Fixtures  []Fixture `json:"fixtures,omitempty"`
	IP        string    `json:"ip,omitempty"`
}

// Record is one member as `fleetbox-db ls --json` prints it.
type Record struct {
	Name      string    `json:"name"`
	Cluster   string    `json:"cluster"`
	State     string    `json:"state"`
	Reason    *string   `json:"reason"` // why an unreadable config is (null when ok)
	MAC       string    `json:"mac"`
	CPUs      int       `json:"cpus"`
	MemoryMB  int       `json:"memory_mb"`
	DiskMB    int       `json:"disk_mb"`
	Image     string    `json:"image"`
	CreatedAt time.Time `json:"created_at"`
	Fixtures  []Fixture `json:"fixtures"`
	IP        string    `json:"ip"`
}

type member struct{ cluster, name string }

// list is the store's List(): cluster-sorted, then member-sorted, with one stat per config.
func list(root string) []member {
	clusters := filepath.Join(root, "clusters")
	top, err := os.ReadDir(clusters)
	if err != nil {
		return nil
	}
	var found []member
	for _, c := range top {
		if !c.IsDir() {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(clusters, c.Name()))
		if err != nil {
			continue
		}
		for _, m := range entries {
			if !m.IsDir() {
				continue
			}
			// The store stats each config (Exists); configless members are listed all the same.
			_, _ = os.Stat(filepath.Join(clusters, c.Name(), m.Name(), "config.json"))
			found = append(found, member{c.Name(), m.Name()})
		}
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].cluster < found[j].cluster })
	return found
}

func load(root string, m member) (*VM, error) {
	data, err := os.ReadFile(filepath.Join(root, "clusters", m.cluster, m.name, "config.json"))
	if err != nil {
		return nil, err
	}
	var vm VM
	if err := json.Unmarshal(data, &vm); err != nil {
		return nil, err
	}
	return &vm, nil
}

func loadAll(root string) ([]member, []*VM) {
	members := list(root)
	vms := make([]*VM, len(members))
	for i, m := range members {
		vms[i], _ = load(root, m)
	}
	return members, vms
}

func lsJSON(root string, out *bufio.Writer) error {
	members, vms := loadAll(root)
	records := make([]Record, 0, len(members))
	for i, m := range members {
		r := Record{Name: m.name, Cluster: m.cluster, State: "ok", Fixtures: []Fixture{}}
		if vm := vms[i]; vm != nil {
			r.MAC, r.CPUs, r.MemoryMB, r.DiskMB, r.Image = vm.MAC, vm.CPUs, vm.MemoryMB, vm.DiskMB, vm.Image
			r.CreatedAt, r.IP = vm.CreatedAt, vm.IP
			if vm.Fixtures != nil {
				r.Fixtures = vm.Fixtures
			}
		} else {
			r.State = "unreadable"
			reason := "the config does not decode"
			r.Reason = &reason
		}
		records = append(records, r)
	}
	data, err := json.MarshalIndent(records, "", "  ")
	if err != nil {
		return err
	}
	_, err = out.Write(append(data, '\n'))
	return err
}

func ipv4(text string) (uint32, bool) {
	ip := net.ParseIP(text).To4()
	if ip == nil {
		return 0, false
	}
	return binary.BigEndian.Uint32(ip), true
}

func freeIPs(root, cidr string, limit int, out *bufio.Writer) error {
	_, network, err := net.ParseCIDR(cidr)
	if err != nil {
		return err
	}
	_, vms := loadAll(root)
	taken := make(map[uint32]bool, len(vms))
	for _, vm := range vms {
		if vm == nil {
			continue
		}
		if v, ok := ipv4(vm.IP); ok {
			taken[v] = true
		}
	}
	ones, bits := network.Mask.Size()
	first := binary.BigEndian.Uint32(network.IP.To4())
	last := first + uint32(uint64(1)<<uint(bits-ones)) - 1
	gateway := first + 1
	for host, n := first+1, 0; host < last && n < limit; host++ {
		if host == gateway || taken[host] {
			continue
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], host)
		fmt.Fprintln(out, net.IP(b[:]).String())
		n++
	}
	return nil
}

func whoHas(root, value string, out *bufio.Writer) int {
	members, vms := loadAll(root)
	for i, vm := range vms {
		if vm != nil && (vm.IP == value || strings.EqualFold(vm.MAC, value)) {
			fmt.Fprintln(out, members[i].name)
			return 0
		}
	}
	return 1
}

func main() {
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	defer out.Flush()
	args := os.Args[1:]
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fleetbox-baseline list|ls-json|free-ips|who-has ROOT [ARGS]")
		os.Exit(2)
	}
	code := 0
	var err error
	switch root := args[1]; args[0] {
	case "list":
		for _, m := range list(root) {
			fmt.Fprintln(out, m.name)
		}
	case "ls-json":
		err = lsJSON(root, out)
	case "free-ips":
		limit, _ := strconv.Atoi(args[3])
		err = freeIPs(root, args[2], limit, out)
	case "who-has":
		code = whoHas(root, args[2], out)
	default:
		err = fmt.Errorf("unknown command %q", args[0])
	}
	if err != nil {
		out.Flush()
		fmt.Fprintln(os.Stderr, "fleetbox-baseline:", err)
		os.Exit(2)
	}
	if code != 0 {
		out.Flush()
		os.Exit(code)
	}
}
