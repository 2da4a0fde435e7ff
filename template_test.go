package minipush

import (
	"strings"
	"testing"
)

func TestNewTemplate(t *testing.T) {
	tpl := NewTemplate("wx1", "T1", "订单状态通知", "商品名称:{{thing1.DATA}}\n订单状态：{{phrase2.DATA}}\n时间 {{time3.DATA}} 至 {{time4.DATA}}\n",
		"商品名称:键盘\n订单状态：已发货\n", 2, map[string][]string{"phrase2": {"已发货", "未发货"}})
	var got []string
	for _, f := range tpl.Fields {
		got = append(got, f.Key+"/"+f.Name+"/"+f.Rule+"/"+f.Example+"/"+strings.Join(f.Enum, ","))
	}
	want := "thing1/商品名称/thing/键盘/ phrase2/订单状态/enum/已发货/已发货,未发货 time3/时间/time// time4/至/time//"
	if g := strings.Join(got, " "); g != want {
		t.Fatalf("fields\n got %s\nwant %s", g, want)
	}
	if r := tpl.Render(map[string]string{"thing1": "键盘", "phrase2": "已发货", "time3": "9:00"}); r != "商品名称:键盘\n订单状态：已发货\n时间 9:00 至 {{time4.DATA}}" {
		t.Fatalf("render %q", r)
	}
}

func TestDiffTemplates(t *testing.T) {
	a := NewTemplate("wx1", "A", "a", "x:{{thing1.DATA}}", "", 2, nil)
	b := NewTemplate("wx1", "B", "b", "x:{{thing1.DATA}}", "", 2, nil)
	c := NewTemplate("wx1", "C", "c", "x:{{thing1.DATA}}", "", 2, nil)
	b2 := NewTemplate("wx1", "B", "b", "x:{{thing1.DATA}}", "", 2, map[string][]string{"thing1": {"v"}})
	added, changed, removed := DiffTemplates([]Template{a, b}, []Template{b2, c})
	if strings.Join(added, ",") != "C" || strings.Join(changed, ",") != "B" || strings.Join(removed, ",") != "A" {
		t.Fatalf("added %v changed %v removed %v", added, changed, removed)
	}
}
