package expire_test

import (
	"bytes"
	"encoding/json"
	"testing"

	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"minipush/internal/expire"
)

func TestEventAttribute(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   streamtypes.AttributeValue
		want string // JSON of the events value
	}{
		{"S", &streamtypes.AttributeValueMemberS{Value: "x"}, `{"S":"x"}`},
		{"N", &streamtypes.AttributeValueMemberN{Value: "12"}, `{"N":"12"}`},
		{"B", &streamtypes.AttributeValueMemberB{Value: []byte{1, 2}}, `{"B":"AQI="}`},
		{"BOOL", &streamtypes.AttributeValueMemberBOOL{Value: true}, `{"BOOL":true}`},
		{"NULL", &streamtypes.AttributeValueMemberNULL{Value: true}, `{"NULL":true}`},
		{"SS", &streamtypes.AttributeValueMemberSS{Value: []string{"a", "b"}}, `{"SS":["a","b"]}`},
		{"NS", &streamtypes.AttributeValueMemberNS{Value: []string{"1"}}, `{"NS":["1"]}`},
		{"BS", &streamtypes.AttributeValueMemberBS{Value: [][]byte{{1}}}, `{"BS":["AQ=="]}`},
		{"L", &streamtypes.AttributeValueMemberL{Value: []streamtypes.AttributeValue{&streamtypes.AttributeValueMemberS{Value: "x"}}}, `{"L":[{"S":"x"}]}`},
		{"M", &streamtypes.AttributeValueMemberM{Value: map[string]streamtypes.AttributeValue{"k": &streamtypes.AttributeValueMemberN{Value: "1"}}}, `{"M":{"k":{"N":"1"}}}`},
		{"EmptyM", &streamtypes.AttributeValueMemberM{Value: map[string]streamtypes.AttributeValue{}}, `{"M":{}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := expire.EventAttribute(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := got.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer // aws-lambda-go pads its JSON with spaces
			if err := json.Compact(&b, raw); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Fatalf("EventAttribute = %s, want %s", b.String(), tc.want)
			}
		})
	}
	t.Run("ErrUnknownMember", func(t *testing.T) {
		t.Parallel()
		if _, err := expire.EventAttribute(&streamtypes.UnknownUnionMember{Tag: "X"}); err == nil {
			t.Fatal("EventAttribute of an unknown member succeeded")
		}
	})
}
