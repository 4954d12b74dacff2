package state

// validateDNS checks domains and records. DNS validation rules are added with the dns commands.
func (s *State) validateDNS() error { return nil }
