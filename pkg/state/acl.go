package state

// ACL types of a listener, as the cloud names them.
const (
	ACLWhite = "white"
	ACLBlack = "black"
)

// ACL is an access control list: addresses and CIDR ranges a listener admits (a white list)
// or refuses (a black list).
type ACL struct {
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	Entries []ACLEntry `json:"entries"`
}

// ACLEntry is one range of an ACL.
type ACLEntry struct {
	CIDR        string `json:"cidr"`
	Description string `json:"description,omitempty"`
}
