package sandbox_test

import (
	"strings"
	"testing"

	"minipush/internal/dev/sandbox"
)

func TestValidateValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ, value string
		ok         bool
	}{
		{"thing", "订单已发货", true},
		{"thing", "Order #12 shipped!", true},
		{"thing", strings.Repeat("字", 20), true},
		{"thing", strings.Repeat("字", 21), false},
		{"thing", "", false},
		{"thing", "line1\nline2", false},
		{"thing", "tab\there", false},
		{"number", "12345", true},
		{"number", "3.14", true},
		{"number", strings.Repeat("9", 32), true},
		{"number", strings.Repeat("9", 33), false},
		{"number", "-1", false},
		{"number", "1e5", false},
		{"number", "12a", false},
		{"letter", "abcXYZ", true},
		{"letter", strings.Repeat("a", 33), false},
		{"letter", "abc1", false},
		{"symbol", "#*", true},
		{"symbol", "!!!!!", true},
		{"symbol", "!!!!!!", false},
		{"symbol", "a!", false},
		{"character_string", "SO-2024-001", true},
		{"character_string", strings.Repeat("x", 32), true},
		{"character_string", strings.Repeat("x", 33), false},
		{"character_string", "has space", false},
		{"character_string", "中文", false},
		{"time", "15:01", true},
		{"time", "2019-10-01 15:01", true},
		{"time", "2019年10月1日 15:01", true},
		{"time", "15:01~16:30", true},
		{"time", "2019-10-01 15:01:59 ~ 2019-10-01 16:00", true},
		{"time", "25:00", false},
		{"time", "2019-10-01", false},
		{"time", "tomorrow", false},
		{"time", "1:00~2:00~3:00", false},
		{"date", "2019-10-01", true},
		{"date", "2019/10/01 15:01", true},
		{"date", "2019.10.1", true},
		{"date", "2019年10月1日", true},
		{"date", "2019-10-01~2019-10-07", true},
		{"date", "2019-10/01", false},
		{"date", "15:01", false},
		{"amount", "¥100.00", true},
		{"amount", "100元", true},
		{"amount", "$1234567890", true},
		{"amount", "¥12345678901", false},
		{"amount", "¥¥1", false},
		{"amount", "ten", false},
		{"phone_number", "+86 138-0013-8000", true},
		{"phone_number", "123456789012345678", false},
		{"phone_number", "call me", false},
		{"car_number", "粤A8Z888挂", true},
		{"car_number", "粤A12345", true},
		{"car_number", "粤A12345挂9", false},
		{"car_number", "A粤123", false},
		{"name", "张三", true},
		{"name", "John Smith", true},
		{"name", strings.Repeat("a", 20), true},
		{"name", strings.Repeat("a", 21), false},
		{"name", "张三Smith很长的名字啊", false}, // mixed counts as Chinese: over 10
		{"name", "R2D2", false},
		{"phrase", "配送中", true},
		{"phrase", "配送中已完成", false},
		{"phrase", "ok", false},
		{"unknown_type", "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"/"+tt.value, func(t *testing.T) {
			t.Parallel()
			got := sandbox.ValidateValue(tt.typ, tt.value)
			if (got == "") != tt.ok {
				t.Errorf("ValidateValue(%q, %q) = %q, want ok=%v", tt.typ, tt.value, got, tt.ok)
			}
		})
	}
}
