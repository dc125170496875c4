(function(){
  var panels=document.querySelectorAll('.panel[data-window]');
  var buttons=document.querySelectorAll('nav.windows button[data-show]');
  function show(w){
    for(var i=0;i<panels.length;i++){panels[i].hidden=panels[i].getAttribute('data-window')!==w;}
    for(var j=0;j<buttons.length;j++){
      buttons[j].setAttribute('aria-selected',String(buttons[j].getAttribute('data-show')===w));}
    document.body.setAttribute('data-window',w);
  }
  for(var k=0;k<buttons.length;k++){buttons[k].addEventListener('click',function(){
    var w=this.getAttribute('data-show');show(w);
    if(window.history&&history.replaceState){history.replaceState(null,'','#window='+w);}});}
  function fromHash(){
    var m=/window=([0-9a-z]+)/.exec(location.hash);
    var ok=m&&document.querySelector('nav.windows button[data-show="'+m[1]+'"]');
    show(ok?m[1]:document.body.getAttribute('data-default-window'));
  }
  window.addEventListener('hashchange',fromHash);
  fromHash();
})();
