// Package obs is what every engine of the data plane reports: call records,
// metrics and the access log.
package obs
